export default function Page() {
  return (
    <main>
      <p>
        Try <code>curl -i -H &apos;X-Org-Id: globex&apos; http://127.0.0.1:3000/api/hello</code>
      </p>
    </main>
  );
}
