# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
"""The rules of deploy/components/alerts/prometheusrule.yaml as a plain Prometheus rules file.

    alert-rules.py PROMETHEUSRULE OUT [--no-annotations] [--scale N] [--tests TESTFILE]

Writes spec: of the PrometheusRule (its groups:) to OUT, so that promtool and a plain Prometheus
read the very rules the operator would load. --no-annotations drops the annotations (promtool
test rules compares them; their templates are checked by promtool check rules on the full
file). --scale N divides every duration (for:, range selectors) by N, for a live test that
cannot wait minutes. --tests TESTFILE fails unless every alert has a test in TESTFILE that
expects it to fire.
"""

from __future__ import annotations

import argparse
import re
import sys

import yaml

DURATION = re.compile(r"(\d+)([smhd])")
UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def scaled(duration: str, n: int) -> str:
    seconds = sum(int(v) * UNIT[u] for v, u in DURATION.findall(duration))
    return f"{max(1, seconds // n)}s"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("rule")
    ap.add_argument("out")
    ap.add_argument("--no-annotations", action="store_true")
    ap.add_argument("--scale", type=int, default=1)
    ap.add_argument("--tests")
    opts = ap.parse_args()
    with open(opts.rule) as f:
        doc = yaml.safe_load(f)
    if doc.get("kind") != "PrometheusRule":
        sys.exit(f"{opts.rule}: not a PrometheusRule")
    groups = doc["spec"]["groups"]
    alerts = []
    for group in groups:
        for rule in group["rules"]:
            alerts.append(rule["alert"])
            if opts.no_annotations:
                rule.pop("annotations", None)
            if opts.scale > 1:
                if "for" in rule:
                    rule["for"] = scaled(rule["for"], opts.scale)
                rule["expr"] = re.sub(
                    r"\[(\w+)\]", lambda m: f"[{scaled(m.group(1), opts.scale)}]", rule["expr"]
                )
    with open(opts.out, "w") as f:
        yaml.safe_dump({"groups": groups}, f, sort_keys=False)
    if opts.tests:
        with open(opts.tests) as f:
            tests = yaml.safe_load(f)["tests"]
        fired = {
            t["alertname"]
            for test in tests
            for t in test.get("alert_rule_test") or []
            if t.get("exp_alerts")
        }
        untested = [a for a in alerts if a not in fired]
        if untested:
            sys.exit(f"alerts without a test that sees them fire in {opts.tests}: {', '.join(untested)}")
        print(f"alert-rules: {len(alerts)} alerts, each with a test that sees it fire")
    return 0


if __name__ == "__main__":
    sys.exit(main())
