// Score a Stryker JSON report: node summarize.mjs <report.json> <sample.json|-> <equivalents> <min-pct|->
//
// Counts: Killed and Timeout are killed; Survived and NoCoverage survived;
// CompileError and RuntimeError are invalid (left out); a mutant listed in
// the equivalents file is equivalent whatever its status. With a sample only
// the chosen mutants count (what the sample plugins left out is not).
// score = killed / (total - equivalent).
// The last line printed is the MUTATION line; exit 1 below min-pct, 2 when
// the report lacks a chosen mutant.
import fs from 'node:fs';
import { readEquivalents, keyOf } from './equivalents.mjs';

const [reportFile, sampleFile, eqFile, minArg, secondsArg] = process.argv.slice(2);
const report = JSON.parse(fs.readFileSync(reportFile, 'utf8'));
const eq = readEquivalents(eqFile);

const results = new Map();
for (const [file, f] of Object.entries(report.files))
  for (const m of f.mutants) {
    const r = { file, mutatorName: m.mutatorName, replacement: m.replacement, location: m.location, status: m.status, statusReason: m.statusReason };
    results.set(keyOf(r), r);
  }

let counted;
let missing = 0;
if (sampleFile && sampleFile !== '-') {
  const sample = JSON.parse(fs.readFileSync(sampleFile, 'utf8'));
  counted = sample.map((m) => {
    const k = keyOf(m);
    if (results.has(k)) return results.get(k);
    if (eq.has(k)) return { ...m, status: 'NotRun' };
    missing++;
    console.log(`  missing from the report: ${k}`);
    return { ...m, status: 'Missing' };
  });
} else {
  counted = [...results.values()].filter((r) => r.status !== 'Ignored');
}

const KILLED = new Set(['Killed', 'Timeout']);
const SURVIVED = new Set(['Survived', 'NoCoverage']);
const INVALID = new Set(['CompileError', 'RuntimeError']);
const perFile = new Map();
const tally = { killed: 0, timeout: 0, survived: 0, nocoverage: 0, equivalent: 0, invalid: 0 };
const survivors = [];
const killedButListed = [];
for (const r of counted) {
  const pf = perFile.get(r.file) || { killed: 0, survived: 0, equivalent: 0, invalid: 0 };
  perFile.set(r.file, pf);
  const k = keyOf(r);
  if (eq.has(k)) {
    tally.equivalent++;
    pf.equivalent++;
    if (KILLED.has(r.status)) killedButListed.push(r);
  } else if (KILLED.has(r.status)) {
    tally.killed++;
    pf.killed++;
    if (r.status === 'Timeout') tally.timeout++;
  } else if (SURVIVED.has(r.status)) {
    tally.survived++;
    pf.survived++;
    if (r.status === 'NoCoverage') tally.nocoverage++;
    survivors.push(r);
  } else if (INVALID.has(r.status)) {
    tally.invalid++;
    pf.invalid++;
  }
}

console.log('per file (killed / survived / equivalent / invalid):');
for (const [file, pf] of [...perFile.entries()].sort()) {
  const denom = pf.killed + pf.survived;
  const pct = denom ? ((100 * pf.killed) / denom).toFixed(1) : '-';
  console.log(`  ${file.padEnd(16)} ${pf.killed} / ${pf.survived} / ${pf.equivalent} / ${pf.invalid}  ${pct}%`);
}
if (survivors.length) {
  console.log(`survivors (${survivors.length}):`);
  for (const r of survivors) {
    const rep = r.replacement.length > 120 ? r.replacement.slice(0, 117) + '...' : r.replacement;
    console.log(`  ${keyOf({ ...r, replacement: rep })}${r.status === 'NoCoverage' ? '  [no coverage]' : ''}`);
  }
}
for (const r of killedButListed) console.log(`  note: listed as equivalent but killed: ${keyOf(r)}`);
// Left out by the sample plugins: Ignored, or a "compile error" whose reason says so.
const outside = (r) => r.status === 'Ignored' || r.statusReason === 'not in the sample';
const ran = [...results.values()].filter((r) => !outside(r)).length;
if (secondsArg && ran) console.log(`mutants run: ${ran} in ${secondsArg} s (${(Number(secondsArg) / ran).toFixed(1)} s per mutant, listing and dry run included)`);
console.log(`timeouts counted as killed: ${tally.timeout}; no coverage counted as survived: ${tally.nocoverage}; ` +
  `invalid (left out): ${tally.invalid}` + '');
const total = tally.killed + tally.survived + tally.equivalent;
const denom = total - tally.equivalent;
const score = denom ? (100 * tally.killed) / denom : 100;
console.log(`MUTATION node killed=${tally.killed} survived=${tally.survived} equivalent=${tally.equivalent} total=${total} score=${score.toFixed(1)}%`);
if (missing) process.exit(2);
if (minArg && minArg !== '-' && score < Number(minArg)) process.exit(1);
