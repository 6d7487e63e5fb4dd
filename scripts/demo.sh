#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Both binaries end to end on this machine (as root), touching nothing of the host's network:
#  1. the sidecar with --setup-iptables in a throwaway network namespace;
#  2. the webhook on https://localhost:9443 with the certificates in testdata/;
#  3. README's "Try it" AdmissionReview (testdata/admission.json) sent to the webhook, its patch decoded and printed;
#  4. the namespace's address and rules printed, then SIGTERM: the sidecar cleans up.
set -euo pipefail
cd "$(dirname "$0")/.."

[ "$(id -u)" -eq 0 ] || { echo "demo: run as root (it creates a network namespace)" >&2; exit 1; }
./scripts/install-test-deps.sh
printf '\033[1m== %s\033[0m\n' "building both binaries (debug; a few minutes the first time on 2 cores)"
cargo build --locked -p apiserver-proxy-sidecar -p apiserver-proxy-pod-webhook
sidecar=target/debug/apiserver-proxy-sidecar
webhook=target/debug/apiserver-proxy-pod-webhook

ip_address=198.18.0.2
port=${DEMO_WEBHOOK_PORT:-9443}
ns="apiserver-proxy-demo-$$"
work="$(mktemp -d)"
sidecar_pid="" webhook_pid=""
finish() {
  [ -n "$webhook_pid" ] && kill "$webhook_pid" 2>/dev/null || true
  [ -n "$sidecar_pid" ] && kill "$sidecar_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$work"
}
trap finish EXIT
say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
in_ns() { ip netns exec "$ns" "$@"; }
our_rules() { in_ns iptables-save | grep -F -- "$ip_address" || true; }

say "sidecar: --ip-address=$ip_address --setup-iptables --cleanup in network namespace $ns"
ip netns add "$ns"
# Not through in_ns: a backgrounded function would be a subshell, and $! would not be the sidecar.
ip netns exec "$ns" "$sidecar" --ip-address="$ip_address" --setup-iptables --cleanup \
  --xtables-lock="$work/xtables.lock" 2>"$work/sidecar.log" &
sidecar_pid=$!
for _ in $(seq 100); do [ "$(our_rules | wc -l)" -ge 5 ] && break; sleep 0.05; done
cat "$work/sidecar.log"

say "webhook: --apiserver-fqdn=foo.bar. --cert-dir testdata on https://localhost:$port"
"$webhook" --apiserver-fqdn=foo.bar. --cert-dir testdata --host 127.0.0.1 --port "$port" \
  2>"$work/webhook.log" &
webhook_pid=$!
for _ in $(seq 100); do
  curl -sf --cacert testdata/ca.crt "https://localhost:$port/readyz" >/dev/null && break
  sleep 0.05
done

say "AdmissionReview testdata/admission.json → decoded patch"
response="$(curl -sS --fail-with-body --cacert testdata/ca.crt -XPOST \
  -H 'Content-Type: application/json' -H 'Accept: application/json' \
  --data-binary @testdata/admission.json "https://localhost:$port/webhook/pod-apiserver-env")"
patch="$(sed -n 's/.*"patch":"\([^"]*\)".*/\1/p' <<<"$response" | base64 -d)"
[ -n "$patch" ] || { echo "demo: no patch in the answer: $response" >&2; exit 1; }
if command -v jq >/dev/null; then jq . <<<"$patch"; elif command -v python3 >/dev/null; then python3 -m json.tool <<<"$patch"; else echo "$patch"; fi
grep -q '"KUBERNETES_SERVICE_HOST"' <<<"$patch" || { echo "demo: the patch lacks the variable" >&2; exit 1; }

say "the namespace's address on lo"
in_ns ip addr show dev lo | grep -F "$ip_address"
say "the namespace's rules for $ip_address"
our_rules
[ "$(our_rules | wc -l)" -eq 5 ] || { echo "demo: expected 5 rules" >&2; exit 1; }

say "SIGTERM: the sidecar removes what it created"
kill -TERM "$sidecar_pid"
wait "$sidecar_pid"
sidecar_pid=""
tail -n 8 "$work/sidecar.log"
left="$(our_rules | wc -l)"
in_ns ip addr show dev lo | grep -qF "$ip_address" && { echo "demo: address left behind" >&2; exit 1; }
[ "$left" -eq 0 ] || { echo "demo: $left rules left behind" >&2; exit 1; }
echo "address and rules removed"
