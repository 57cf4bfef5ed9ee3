// Choose the mutants of a sampled run: node select.mjs <listing.json> <n> <seed> <out.json> [equivalents]
//
// The listing is a Stryker JSON report of a run in which every mutant was
// ignored (STRYKER_NODE_SAMPLE=list), so it holds every mutant Stryker would
// make. They are sorted by (file, line, column, mutator, replacement), then
// a seeded Fisher-Yates shuffle (mulberry32) picks the first n: the same
// sources, n and seed always give the same sample. Prints the --mutate
// ranges (one per line) of the chosen mutants that are not listed as
// equivalent; equivalent ones stay in the sample file and count as equivalent.
import fs from 'node:fs';
import { readEquivalents, keyOf } from './equivalents.mjs';

const [listing, nArg, seedArg, out, eqFile] = process.argv.slice(2);
const n = Number(nArg);
const seed = Number(seedArg) >>> 0;
const report = JSON.parse(fs.readFileSync(listing, 'utf8'));

const all = [];
for (const [file, f] of Object.entries(report.files))
  for (const m of f.mutants)
    all.push({ file, mutatorName: m.mutatorName, replacement: m.replacement, location: m.location });
const cmp = (a, b) => (a < b ? -1 : a > b ? 1 : 0);
all.sort((a, b) =>
  cmp(a.file, b.file) || a.location.start.line - b.location.start.line ||
  a.location.start.column - b.location.start.column || cmp(a.mutatorName, b.mutatorName) ||
  cmp(a.replacement, b.replacement));

function mulberry32(a) {
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rand = mulberry32(seed);
const pool = all.slice();
const take = Math.min(n, pool.length);
for (let i = 0; i < take; i++) {
  const j = i + Math.floor(rand() * (pool.length - i));
  [pool[i], pool[j]] = [pool[j], pool[i]];
}
const chosen = pool.slice(0, take);
chosen.sort((a, b) => cmp(a.file, b.file) || a.location.start.line - b.location.start.line ||
  a.location.start.column - b.location.start.column);
fs.writeFileSync(out, JSON.stringify(chosen, null, 1));

const eq = eqFile ? readEquivalents(eqFile) : new Map();
for (const m of chosen) {
  if (eq.has(keyOf(m))) continue;
  const { start, end } = m.location;
  // Stryker's range: lines 1-based, columns 0-based (the report's are 1-based).
  console.log(`${m.file}:${start.line}:${start.column - 1}-${end.line}:${end.column - 1}`);
}
process.stderr.write(`select: ${chosen.length} of ${all.length} mutants (seed ${seed})\n`);
