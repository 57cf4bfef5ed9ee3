// scripts/mutate/node-equivalent.txt: one mutant a line,
//   <file>:<line>:<column>-<line>:<column> <mutator> <replacement as a JSON string> -- <reason>
// (start and end as Stryker's report gives them, lines and columns 1-based;
// the end is part of the name: `a || b` -> false and `a` -> false start at
// the same place). Blank lines and lines starting with # are comments.
import fs from 'node:fs';

export function keyOf(m) {
  const { start, end } = m.location;
  return `${m.file}:${start.line}:${start.column}-${end.line}:${end.column} ${m.mutatorName} ${JSON.stringify(m.replacement)}`;
}

export function readEquivalents(file) {
  const out = new Map();
  if (!file || !fs.existsSync(file)) return out;
  const lines = fs.readFileSync(file, 'utf8').split('\n');
  lines.forEach((line, i) => {
    if (line.trim() === '' || line.startsWith('#')) return;
    const m = /^(\S+:\d+:\d+-\d+:\d+) (\S+) ("(?:[^"\\]|\\.)*") -- (.+)$/.exec(line);
    if (!m) throw new Error(`${file}:${i + 1}: expected '<file>:<line>:<col>-<line>:<col> <mutator> "<replacement>" -- <reason>'`);
    out.set(`${m[1]} ${m[2]} ${JSON.stringify(JSON.parse(m[3]))}`, m[4]);
  });
  return out;
}
