#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Runs the webhook binary the image build made (make image-builds) the way deploy/ runs it, with
# a certificate from scripts/webhook-cert.sh, and checks what docs/deploying.md promises:
# - the probes of the Deployment (HTTPS /readyz and /healthz) answer 200, verified against the CA
#   that goes into caBundle, under the Service's DNS name;
# - the MutatingWebhookConfiguration's path mutates README's "Try it" request (testdata/admission.json) with the
#   Deployment's --apiserver-fqdn;
# - renewing the certificate (scripts/webhook-cert.sh again, as a Secret update would) is served
#   to new connections without a restart.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
venv="$("$root/scripts/ci-venv.sh")"
bin="${CARGO_TARGET_DIR:-$root/target}/image/webhook/usr/local/bin/apiserver-proxy-pod-webhook"
[ -x "$bin" ] || { echo "test-webhook-deploy: $bin missing: run make image-builds first" >&2; exit 1; }
tmp="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
passed=0 failed=0
ok() { echo "ok: $*"; passed=$((passed + 1)); }
bad() { echo "FAIL: $*"; failed=$((failed + 1)); }

# What deploy/ says: the Deployment's args, the Service name and namespace, the webhook path.
"$venv/kubectl" kustomize "$root/deploy" >"$tmp/rendered.yaml"
eval "$("$venv/python" - "$tmp/rendered.yaml" <<'EOF'
import shlex, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
(dep,) = [d for d in docs if d["kind"] == "Deployment"]
(mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
c = dep["spec"]["template"]["spec"]["containers"][0]
svc = mwc["webhooks"][0]["clientConfig"]["service"]
probes = [c[p]["httpGet"]["path"] for p in ("readinessProbe", "livenessProbe")]
print(f"args=({' '.join(shlex.quote(a) for a in c['args'])})")
print(f"svc={svc['name']} ns={svc['namespace']} path={svc['path']}")
print(f"probes=({' '.join(probes)})")
EOF
)"
fqdn=""
run_args=()
for a in "${args[@]}"; do
  case "$a" in
    --apiserver-fqdn=*) fqdn="${a#*=}"; run_args+=("$a") ;;
    --cert-dir=* | --port=* | --host=*) ;; # replaced below: local directory, free port, loopback
    *) run_args+=("$a") ;;
  esac
done
port="$("$venv/python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
host="$svc.$ns.svc"

"$root/scripts/webhook-cert.sh" "$tmp/certs" "$ns" "$svc" >/dev/null
"$bin" "${run_args[@]}" --cert-dir="$tmp/certs" --port="$port" --host=127.0.0.1 >"$tmp/webhook.log" 2>&1 &
pid=$!
curl_() { curl --silent --show-error --max-time 5 --cacert "$tmp/certs/ca.crt" --resolve "$host:$port:127.0.0.1" "$@"; }
for _ in $(seq 50); do
  curl_ -o /dev/null "https://$host:$port/readyz" 2>/dev/null && break
  sleep 0.1
done

for p in "${probes[@]}"; do
  code="$(curl_ -o /dev/null -w '%{http_code}' "https://$host:$port$p" || true)"
  [ "$code" = 200 ] && ok "probe $p answers 200 over TLS verified with the caBundle CA as $host" || bad "probe $p: HTTP $code"
done

resp="$(curl_ -X POST -H 'Content-Type: application/json' --data-binary "@$root/testdata/admission.json" \
  "https://$host:$port$path?timeout=2s" || true)"
patch="$("$venv/python" -c 'import base64, json, sys; print(base64.b64decode(json.load(sys.stdin)["response"]["patch"]).decode())' <<<"$resp" 2>/dev/null || true)"
if grep -q "\"KUBERNETES_SERVICE_HOST\"" <<<"$patch" && grep -qF "\"$fqdn\"" <<<"$patch"; then
  ok "POST $path sets KUBERNETES_SERVICE_HOST=$fqdn"
else
  bad "POST $path: response $resp"
fi

# Rotation: a new serving certificate from the same CA, as cert-manager or a Secret update does.
served() { openssl s_client -connect "127.0.0.1:$port" -servername "$host" </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256; }
before="$(served)"
"$root/scripts/webhook-cert.sh" "$tmp/certs" "$ns" "$svc" >/dev/null
want="$(openssl x509 -in "$tmp/certs/tls.crt" -noout -fingerprint -sha256)"
rotated=""
for _ in $(seq 100); do
  [ "$(served)" = "$want" ] && { rotated=1; break; }
  sleep 0.1
done
if [ -n "$rotated" ] && [ "$before" != "$want" ] && kill -0 "$pid" 2>/dev/null; then
  ok "a renewed certificate is served to new connections within 10 s, same process"
else
  bad "renewed certificate not served after 10 s"; tail -5 "$tmp/webhook.log"
fi

echo "test-webhook-deploy: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
