// fqm-execution side of compare.sh: evaluates every shared official case with
// its own measure, once with Calculator.calculate and once with calculateRaw
// (all cases of a measure in one batch call), period 2025-01-01..2025-12-31.
// Prints one JSON line per method: {method, cases, seconds, rate, matches}.
// Usage: node fqm-bench.js SHARED_ECQM_DIR   (fqm-execution resolvable via NODE_PATH)
'use strict';
const fs = require('fs');
const path = require('path');
const { Calculator } = require('fqm-execution');

const dir = process.argv[2];
const opts = {
  measurementPeriodStart: '2025-01-01',
  measurementPeriodEnd: '2025-12-31',
  calculateHTML: false,
  calculateSDEs: false,
  verboseCalculationResults: false,
};
const CODES = ['initial-population', 'denominator', 'denominator-exclusion', 'numerator', 'denominator-exception'];

function load() {
  const out = [];
  for (const f of fs.readdirSync(path.join(dir, 'measures')).filter((f) => f.endsWith('.json')).sort()) {
    const name = f.replace(/\.json$/, '');
    const measure = JSON.parse(fs.readFileSync(path.join(dir, 'measures', f), 'utf8'));
    const cdir = path.join(dir, 'cases', name);
    const files = fs.readdirSync(cdir).filter((f) => f.endsWith('.json')).sort();
    const cases = files.map((c) => JSON.parse(fs.readFileSync(path.join(cdir, c), 'utf8')));
    const expected = files.map((c) => JSON.parse(fs.readFileSync(path.join(dir, 'expected', name, c), 'utf8')));
    out.push({ name, measure, cases, expected });
  }
  return out;
}

// compares calculate()'s populationResults with the expected counts (first group order)
function matches(m, results) {
  let ok = 0;
  results.forEach((r, i) => {
    const exp = m.expected[i];
    const det = r.detailedResults || [];
    const good = exp.groups.every((g, gi) => {
      const d = det.find((x) => x.groupId === g.id) || det[gi];
      if (!d) return false;
      return Object.entries(g.populations).every(([code, n]) => {
        const p = (d.populationResults || []).find((x) => x.populationType === code && !x.criteriaExpression?.startsWith?.('x'));
        return p ? (p.result ? 1 : 0) === n : n === 0;
      });
    });
    if (good) ok++;
  });
  return ok;
}

async function main() {
  const data = load();
  const total = data.reduce((n, m) => n + m.cases.length, 0);
  for (const method of ['calculate', 'calculateRaw']) {
    let secs = 0;
    let ok = 0;
    let failed = 0;
    for (const m of data) {
      const t0 = process.hrtime.bigint();
      let res;
      try {
        res = await Calculator[method](m.measure, m.cases, opts);
      } catch (e) {
        failed += m.cases.length;
        process.stderr.write(`${method} ${m.name}: ${String(e).slice(0, 200)}\n`);
        continue;
      }
      secs += Number(process.hrtime.bigint() - t0) / 1e9;
      if (method === 'calculate' && res.results) ok += matches(m, res.results);
    }
    const line = { method, cases: total - failed, failed, seconds: +secs.toFixed(3), rate: +((total - failed) / secs).toFixed(2) };
    if (method === 'calculate') line.matches_expected = ok;
    console.log(JSON.stringify(line));
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
