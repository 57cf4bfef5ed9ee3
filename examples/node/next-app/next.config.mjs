// tollgate is a native addon: Next.js must not bundle it, but load it with
// Node's require at run time. Next.js 15: serverExternalPackages (14:
// experimental.serverComponentsExternalPackages).
/** @type {import('next').NextConfig} */
const nextConfig = {
  serverExternalPackages: ['tollgate'],
};

export default nextConfig;
