'use strict';
// prepack: copy the tollgate C sources a packed tarball needs into
// native-src/ (CMakeLists.txt looks at ../.. first, then there): the
// library, the command-line tool (cli/: the package's `tollgate` bin runs
// the executable built from it) and the shared test vectors.
// postpack (--clean): remove the copy again.
const fs = require('node:fs');
const path = require('node:path');

const pkg = path.resolve(__dirname, '..');
const repo = path.resolve(pkg, '..', '..');
const dest = path.join(pkg, 'native-src');
const ENTRIES = ['CMakeLists.txt', 'cmake', 'core', 'capi', 'cli', 'tests/vectors'];

const inCheckout = fs.existsSync(path.join(repo, 'capi', 'include', 'tollgate.h'));
if (!inCheckout) {
  // Packing an already packed copy (outside a checkout): keep its
  // native-src/, which is then the only copy of the C sources.
  if (fs.existsSync(path.join(dest, 'capi', 'include', 'tollgate.h'))) process.exit(0);
  console.error('copy-native-src: no tollgate checkout at ' + repo + ' and no native-src/');
  process.exit(1);
}
fs.rmSync(dest, { recursive: true, force: true });
if (process.argv.includes('--clean')) process.exit(0);
for (const entry of ENTRIES) {
  fs.cpSync(path.join(repo, entry), path.join(dest, entry), {
    recursive: true,
    filter: (src) => !/(^|\/)(__pycache__|\.pyc)$/.test(src),
  });
}
