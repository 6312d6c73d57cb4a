// Parses PromQL expressions with Prometheus' own web-UI grammar (@prometheus-io/lezer-promql)
// and fails on any syntax error node. Input: JSON list of {where, expr} on stdin.
// Usage: python3 deploy/tools/promql_exprs.py | NODE_PATH=DIR/node_modules node deploy/tools/check_promql_lezer.cjs
const { readFileSync } = require("node:fs");
// NODE_PATH points at the node_modules that deploy/validate.sh installs.
const { parser } = require("@prometheus-io/lezer-promql");

const items = JSON.parse(readFileSync(0, "utf8"));
let bad = 0;
for (const { where, expr } of items) {
  const tree = parser.parse(expr);
  const errors = [];
  tree.iterate({
    enter(node) {
      if (node.type.isError) errors.push(node.from);
    },
  });
  if (errors.length) {
    bad++;
    console.error(`${where}: syntax error at offset ${errors[0]}: ${expr.trim()}`);
  }
}
// A self-check: the grammar must reject a broken expression, or this check proves nothing.
let selfErr = false;
parser.parse("sum(rate(x[5m])").iterate({ enter(n) { if (n.type.isError) selfErr = true; } });
if (!selfErr) {
  console.error("lezer-promql accepted a broken expression: check is not working");
  process.exit(2);
}
console.log(`${items.length - bad}/${items.length} PromQL expressions parse (lezer-promql)`);
process.exit(bad ? 1 : 0);
