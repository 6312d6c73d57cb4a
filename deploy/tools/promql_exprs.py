"""Print every PromQL expression of deploy/ as a JSON list of {where, expr} (for the lezer check).

Grafana's $__rate_interval / $__interval become 5m / 1m so that the result is plain PromQL.
"""

import json
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parents[1]


def main() -> None:
    out = []
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    for group in alerts["groups"]:
        for rule in group["rules"]:
            out.append({"where": f"alerts.yml {rule['alert']}", "expr": rule["expr"]})
    dash = json.loads((DEPLOY / "grafana" / "payouts-dashboard.json").read_text())
    for panel in dash["panels"]:
        for target in panel.get("targets", []):
            expr = target["expr"].replace("$__rate_interval", "5m").replace("$__interval", "1m")
            out.append({"where": f"dashboard '{panel['title']}' {target['refId']}", "expr": expr})
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
