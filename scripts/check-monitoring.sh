#!/usr/bin/env bash
# Checks the monitoring assets with promtool (installed when missing): the
# alert rules parse and pass their unit tests, and every query of the Grafana
# dashboard is valid PromQL. (tests/monitoring_assets.rs checks that they
# name only series the Prometheus example exports.)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/ensure-promtool.sh
ensure_promtool

promtool check rules deploy/prometheus/parti-alerts.yml
(cd deploy/prometheus && promtool test rules parti-alerts.test.yml)

# promtool checks expressions in rule files only: wrap each dashboard query in
# a recording rule, with Grafana's variables replaced by plain values.
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 - deploy/grafana/parti-dashboard.json >"$tmp/dashboard-rules.yml" <<'PY'
import json, sys

exprs = []
def walk(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k == "expr" and isinstance(x, str):
                exprs.append(x)
            else:
                walk(x)
    elif isinstance(v, list):
        for x in v:
            walk(x)
walk(json.load(open(sys.argv[1])))
if not exprs:
    sys.exit("no query found in the dashboard")
print("groups:\n  - name: dashboard\n    rules:")
for i, e in enumerate(exprs):
    e = e.replace("$__rate_interval", "5m").replace("$job", ".*")
    print(f"      - record: dashboard:query{i}")
    print(f"        expr: {json.dumps(e)}")
PY
promtool check rules "$tmp/dashboard-rules.yml"
