// Stryker plugins that keep a sampled run to the chosen mutants
// (select.mjs writes the list; STRYKER_NODE_SAMPLE names the file).
//
// node.sh passes the chosen mutants' exact locations as --mutate ranges, so
// nothing outside them is instrumented. Inside a chosen range:
// - the "node-sample" ignorer marks every node Ignored unless it is at a
//   chosen location or holds one, so a chosen block statement does not drag
//   in the mutants nested in it;
// - the "node-sample" checker answers "compile error: not in the sample"
//   for what still comes along (another mutator's mutant on the same node),
//   so Stryker never runs it. summarize.mjs counts the chosen mutants only.
//
// STRYKER_NODE_SAMPLE=list: ignore everything (the listing pass that
// enumerates every mutant without running one).
import fs from 'node:fs';
import { PluginKind, declareValuePlugin, declareClassPlugin } from '@stryker-mutator/api/plugin';
import { CheckStatus } from '@stryker-mutator/api/check';

const spec = process.env.STRYKER_NODE_SAMPLE || '';
// The report's locations: lines and columns 1-based. Babel's (the ignorer
// sees): lines 1-based, columns 0-based. Stryker's internal (the checker
// sees): both 0-based.
let chosen = null;
if (spec !== '' && spec !== 'list') {
  chosen = JSON.parse(fs.readFileSync(spec, 'utf8')).map((m) => ({
    file: m.file,
    mutatorName: m.mutatorName,
    replacement: m.replacement,
    sl: m.location.start.line,
    sc: m.location.start.column - 1,
    el: m.location.end.line,
    ec: m.location.end.column - 1,
  }));
}

function within(outer, inner) {
  const startOk = outer.sl < inner.sl || (outer.sl === inner.sl && outer.sc <= inner.sc);
  const endOk = outer.el > inner.el || (outer.el === inner.el && outer.ec >= inner.ec);
  return startOk && endOk;
}

function sameFile(absolute, relative) {
  return absolute === relative || absolute.endsWith('/' + relative);
}

const ignorer = {
  shouldIgnore(path) {
    if (spec === 'list') return 'listing only';
    if (chosen === null) return undefined;
    const loc = path.node.loc;
    if (!loc) return undefined;
    const file = path.hub && path.hub.file && path.hub.file.opts ? path.hub.file.opts.filename || '' : '';
    const here = { sl: loc.start.line, sc: loc.start.column, el: loc.end.line, ec: loc.end.column };
    for (const c of chosen) {
      if (file && !sameFile(file, c.file)) continue;
      if (within(here, c)) return undefined; // at or around a chosen mutant
    }
    return 'not in the sample';
  },
};

class SampleChecker {
  async init() {}

  async check(mutants) {
    const out = {};
    for (const m of mutants) {
      const keep = chosen === null || chosen.some((c) =>
        sameFile(m.fileName, c.file) && c.mutatorName === m.mutatorName && c.replacement === m.replacement &&
        c.sl === m.location.start.line + 1 && c.sc === m.location.start.column &&
        c.el === m.location.end.line + 1 && c.ec === m.location.end.column);
      out[m.id] = keep ? { status: CheckStatus.Passed } : { status: CheckStatus.CompileError, reason: 'not in the sample' };
    }
    return out;
  }
}
SampleChecker.inject = [];

export const strykerPlugins = [
  declareValuePlugin(PluginKind.Ignore, 'node-sample', ignorer),
  declareClassPlugin(PluginKind.Checker, 'node-sample', SampleChecker),
];
