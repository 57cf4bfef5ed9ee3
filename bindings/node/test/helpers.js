'use strict';
// Shared test helpers: where the package, the repository and the shared
// vectors are, and a fresh key prefix per test.

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

const PACKAGE_ROOT = path.resolve(__dirname, '..');
const REPO_ROOT = path.resolve(PACKAGE_ROOT, '..', '..');
// In a checkout: the repository's tests/vectors; in a packed copy: native-src.
const VECTORS_DIR = [
  path.join(REPO_ROOT, 'tests', 'vectors'),
  path.join(PACKAGE_ROOT, 'native-src', 'tests', 'vectors'),
].find((d) => fs.existsSync(path.join(d, 'gcra.json'))) || null;

function prefix() {
  return 'tgnode:' + crypto.randomBytes(6).toString('hex') + ':';
}

function uniqueKey(name) {
  return name + '-' + crypto.randomBytes(8).toString('hex');
}

module.exports = { PACKAGE_ROOT, REPO_ROOT, VECTORS_DIR, prefix, uniqueKey };
