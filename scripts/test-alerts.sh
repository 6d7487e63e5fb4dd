#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The alerts of deploy/components/alerts/, tested twice:
#  1. unit tests: the rules of prometheusrule.yaml (its spec:, scripts/alert-rules.py) checked
#     with `promtool check rules` and run against testdata/alerts/rules-test.yaml with
#     `promtool test rules`; every alert must have a test that sees it fire;
#  2. live (as root): a real Prometheus (Debian's prometheus) with those rules, every duration
#     divided by 60, scraping both binaries every second, all three in a network namespace this
#     script creates (the sidecar with --setup-iptables on a dummy link, or lo where the kernel
#     has no dummy driver, the webhook on the
#     namespace's loopback with a serving certificate made here that expires in one day); the
#     scraped certificate_expiry_timestamp_seconds must be that certificate's notAfter, and
#     ApiserverProxyWebhookCertificateExpiresVerySoon and ...ExpiresSoon must fire; then the
#     node is broken (the proxy IP deleted again and again, then the sidecar stopped) and
#     Prometheus's own HTTP API must show ApiserverProxySidecarRepairing and
#     ApiserverProxySidecarDown go from inactive to firing. Also checks that every metric the
#     rules and the dashboard use is exported by the binaries. Bounded: each wait gives up
#     after its deadline.
#
#   scripts/test-alerts.sh [--unit-only]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/ci-venv.sh")"
component="$root/deploy/components/alerts"
tmp="$(mktemp -d)"
ns="apiserver-proxy-alerts-$$"
pids=()
finish() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap finish EXIT
say() { echo "test-alerts: $*"; }
fail() { echo "test-alerts: FAIL: $*" >&2; exit 1; }
command -v promtool >/dev/null || fail "promtool missing (Debian: apt-get install prometheus)"

# --- 1. unit tests ----------------------------------------------------------------------------
"$bin/python" "$root/scripts/alert-rules.py" "$component/prometheusrule.yaml" "$tmp/full.yaml"
promtool check rules "$tmp/full.yaml"
"$bin/python" "$root/scripts/alert-rules.py" "$component/prometheusrule.yaml" "$tmp/rules.yaml" \
  --no-annotations --tests "$root/testdata/alerts/rules-test.yaml"
cp "$root/testdata/alerts/rules-test.yaml" "$tmp/rules-test.yaml"
promtool test rules "$tmp/rules-test.yaml"
say "ok: unit tests"
# The dashboard: valid JSON, and every panel's query valid PromQL (checked by promtool as
# recording rules).
"$bin/python" - "$component/dashboard.json" "$tmp/dashboard-rules.yaml" <<'PY'
import json, sys, yaml
dash = json.load(open(sys.argv[1]))
rules = [
    {"record": f"dashboard:panel_{p['id']}_{t['refId']}", "expr": t["expr"]}
    for p in dash["panels"] for t in p.get("targets", [])
]
assert rules, "the dashboard has no query"
yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, open(sys.argv[2], "w"))
PY
promtool check rules "$tmp/dashboard-rules.yaml"
say "ok: the dashboard is valid JSON and its queries valid PromQL"
[ "${1:-}" != --unit-only ] || exit 0

# --- 2. live ----------------------------------------------------------------------------------
[ "$(id -u)" -eq 0 ] || fail "the live test needs root (a network namespace); --unit-only runs the rest"
command -v prometheus >/dev/null || fail "prometheus missing (Debian: apt-get install prometheus)"
cd "$root"
cargo build --locked -q -p apiserver-proxy-sidecar -p apiserver-proxy-pod-webhook
sidecar="$root/target/debug/apiserver-proxy-sidecar"
webhook="$root/target/debug/apiserver-proxy-pod-webhook"
ip_address=198.18.0.2

# The webhook's serving certificate, valid for one day from now: inside both expiry alerts'
# thresholds (1 and 7 days), so both must fire.
certs="$tmp/certs"
mkdir -p "$certs"
openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$certs/ca.key" -out "$certs/ca.crt" -days 2 -subj "/CN=test-alerts CA" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign" 2>/dev/null
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$certs/tls.key" -out "$certs/tls.csr" -subj "/CN=localhost" 2>/dev/null
openssl x509 -req -in "$certs/tls.csr" -CA "$certs/ca.crt" -CAkey "$certs/ca.key" \
  -CAcreateserial -days 1 -out "$certs/tls.crt" -extfile <(printf '%s\n' \
    "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth") 2>/dev/null
not_after="$(date -u -d "$(openssl x509 -in "$certs/tls.crt" -noout -enddate | cut -d= -f2)" +%s)"
say "the webhook's certificate expires at $not_after ($(date -u -d "@$not_after"))"

"$bin/python" "$root/scripts/alert-rules.py" "$component/prometheusrule.yaml" "$tmp/live-rules.yaml" --scale 60
cat >"$tmp/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
  scrape_timeout: 900ms
  evaluation_interval: 1s
rule_files:
  - $tmp/live-rules.yaml
scrape_configs:
  # The job names of components/metrics (PodMonitor kube-system/apiserver-proxy, and the
  # ServiceMonitor's Service), which the rules select on.
  - job_name: kube-system/apiserver-proxy
    static_configs:
      - targets: ['127.0.0.1:16910']
  - job_name: apiserver-proxy-pod-webhook
    scheme: https
    tls_config:
      ca_file: $certs/ca.crt
      server_name: localhost
    static_configs:
      - targets: ['127.0.0.1:9443']
YAML

ip netns add "$ns"
in_ns() { ip netns exec "$ns" "$@"; }
in_ns ip link set lo up
# deploy/'s dummy link where the kernel has the driver (CONFIG_DUMMY), else lo.
dev=lo
if in_ns ip link add probe type dummy 2>/dev/null; then in_ns ip link del probe; dev=apiserver-proxy; fi
say "the sidecar keeps $ip_address on $dev"
ip netns exec "$ns" "$sidecar" --ip-address="$ip_address" --interface="$dev" --manage-interface \
  --setup-iptables --xtables-lock="$tmp/xtables.lock" --metrics-bind-address=127.0.0.1:16910 \
  2>"$tmp/sidecar.log" &
sidecar_pid=$!
pids+=("$sidecar_pid")
ip netns exec "$ns" "$webhook" --apiserver-fqdn=foo.bar. --cert-dir "$certs" --host 127.0.0.1 \
  --port 9443 --shutdown-delay=0s 2>"$tmp/webhook.log" &
pids+=("$!")
ip netns exec "$ns" prometheus --config.file="$tmp/prometheus.yml" --storage.tsdb.path="$tmp/data" \
  --web.listen-address=127.0.0.1:19090 --log.level=warn 2>"$tmp/prometheus.log" &
pids+=("$!")

api() { in_ns curl -sf --max-time 5 "http://127.0.0.1:19090/api/v1/$1"; }
# wait_for SECONDS WHAT PYTHON-EXPR-ON-JSON API-PATH
wait_for() {
  local deadline=$((SECONDS + $1)) what="$2" expr="$3" path="$4" body=""
  while [ "$SECONDS" -lt "$deadline" ]; do
    if body="$(api "$path")" && "$bin/python" -c "import json,sys; d=json.loads(sys.argv[1]); sys.exit(0 if ($expr) else 1)" "$body"; then
      say "ok: $what"
      return 0
    fi
    sleep 1
  done
  echo "--- last answer of $path: $body" >&2
  for log in sidecar webhook prometheus; do echo "--- $log.log" >&2; tail -n 15 "$tmp/$log.log" >&2; done
  fail "$what: not within $1 s"
}
rule_state() { # python expression: the state of alerting rule $1
  echo "[r.get('state') for g in d['data']['groups'] for r in g['rules'] if r.get('name') == '$1']"
}

wait_for 120 "Prometheus scrapes both binaries (up == 1)" \
  "sorted(r['metric']['job'] for r in d['data']['result'] if r['value'][1] == '1') == ['apiserver-proxy-pod-webhook', 'kube-system/apiserver-proxy']" \
  "query?query=up"
# One review and one bad request, so that the webhook's latency and failure series exist.
in_ns curl -sf --cacert "$certs/ca.crt" -XPOST -H 'Content-Type: application/json' \
  --data-binary @testdata/admission.json https://localhost:9443/webhook/pod-apiserver-env >/dev/null
in_ns curl -s --cacert "$certs/ca.crt" https://localhost:9443/no-such-path >/dev/null || true
wait_for 30 "the scraped certificate expiry is the certificate's notAfter ($not_after)" \
  "[r['value'][1] for r in d['data']['result']] == ['$not_after']" \
  "query?query=apiserver_proxy_pod_webhook_certificate_expiry_timestamp_seconds"
# Its "for" is 10 min, 10 s here.
wait_for 60 "ApiserverProxyWebhookCertificateExpiresVerySoon fires for a certificate that expires in a day" \
  "$(rule_state ApiserverProxyWebhookCertificateExpiresVerySoon) == ['firing']" rules
for alert in ApiserverProxySidecarRepairing ApiserverProxySidecarDown; do
  wait_for 30 "$alert is inactive on a healthy node" "$(rule_state "$alert") == ['inactive']" rules
done

say "breaking the node: deleting $ip_address again and again (the sidecar puts it back each time)"
deadline=$((SECONDS + 120))
firing=""
while [ "$SECONDS" -lt "$deadline" ]; do
  in_ns ip addr del "$ip_address/32" dev "$dev" 2>/dev/null || true
  sleep 1
  body="$(api rules || true)"
  firing="$("$bin/python" -c "import json,sys; d=json.loads(sys.argv[1]); print(' '.join($(rule_state ApiserverProxySidecarRepairing)))" "$body" 2>/dev/null || true)"
  [ "$firing" = firing ] && break
done
if [ "$firing" != firing ]; then
  echo "--- repairs: $(api 'query?query=apiserver_proxy_sidecar_repairs_total' || true)" >&2
  echo "--- the rule: $(api rules | "$bin/python" -c 'import json,sys; d=json.load(sys.stdin); print([r for g in d["data"]["groups"] for r in g["rules"] if r.get("name") == "ApiserverProxySidecarRepairing"])' || true)" >&2
  tail -n 5 "$tmp/sidecar.log" >&2
  fail "ApiserverProxySidecarRepairing did not fire within 120 s (state: $firing)"
fi
say "ok: ApiserverProxySidecarRepairing went from inactive to firing"
wait_for 10 "the repairs are in Prometheus" "float(d['data']['result'][0]['value'][1]) >= 3" \
  "query?query=sum(apiserver_proxy_sidecar_repairs_total%7Bkind%3D%22address%22%7D)"

# Every metric the rules and the dashboard name exists: Prometheus scraped it, or the binaries
# register it; the rest must come from elsewhere (kube-state-metrics, up).
names="$(api 'label/__name__/values')"
"$bin/python" - "$names" "$component" "$root" <<'PY' || fail "a metric of the rules or the dashboard does not exist"
import json, re, sys
from pathlib import Path
scraped = set(json.loads(sys.argv[1])["data"])
component, root = Path(sys.argv[2]), Path(sys.argv[3])
text = (component / "prometheusrule.yaml").read_text() + (component / "dashboard.json").read_text()
used = set(re.findall(r"\b((?:apiserver_proxy|controller_runtime)_[a-z_]+)", text))
registered = set()
for src, prefix in ((root / "crates/sidecar/src/metrics.rs", "apiserver_proxy_sidecar_"), (root / "crates/pod-webhook/src/metrics.rs", "")):
    for name in re.findall(r'register\(\s*"([a-z_]+)"', src.read_text()):
        full = name if name.startswith(("apiserver_proxy_", "controller_runtime_")) else prefix + name
        registered |= {full, full + "_total"}
scraped |= registered
missing = sorted(n for n in used - scraped if not any(n == s.rsplit("_", 1)[0] for s in scraped if s.endswith(("_bucket", "_count", "_sum"))))
print(f"test-alerts: {len(used)} metric names in the rules and the dashboard; scraped: {len(used & scraped)}")
if missing:
    print(f"test-alerts: not exported by either binary: {missing}", file=sys.stderr)
    sys.exit(1)
PY
say "ok: every metric the rules and the dashboard use exists"

say "stopping the sidecar"
kill -KILL "$sidecar_pid"
wait "$sidecar_pid" 2>/dev/null || true
wait_for 60 "ApiserverProxySidecarDown went from inactive to firing" \
  "$(rule_state ApiserverProxySidecarDown) == ['firing']" rules
wait_for 10 "Prometheus's alerts API lists it firing" \
  "any(a['labels']['alertname'] == 'ApiserverProxySidecarDown' and a['state'] == 'firing' for a in d['data']['alerts'])" alerts
# Its "for" is 1 h, 60 s here, counted from the first scrape.
wait_for 120 "ApiserverProxyWebhookCertificateExpiresSoon fires for a certificate that expires in a day" \
  "$(rule_state ApiserverProxyWebhookCertificateExpiresSoon) == ['firing']" rules
