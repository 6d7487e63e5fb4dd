#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Runs docs/deploying.md's steps for a serving certificate of one's own, as written, on a
# fresh runtime directory: scripts/webhook-cert.sh, then the kustomization it wrote, rendered
# (kubectl kustomize instead of apply) and validated (kubernetes-validate, strict). Checks that
# the Secret carries the pair and caBundle the CA, that the certificate verifies for the Service,
# that a second run keeps the CA and renews the certificate, that a directory inside this
# repository is refused, and that the work tree is as clean afterwards as before.
# shellcheck source=scripts/test-prelude.sh
. "$(dirname "$0")/test-prelude.sh"
cd "$root"
before="$(git status --porcelain)"

export XDG_RUNTIME_DIR="$tmp/run"
mkdir -m 0700 "$XDG_RUNTIME_DIR"
# The commands of docs/deploying.md, step 5:
scripts/webhook-cert.sh
"$bin/kubectl" kustomize "${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert" >"$tmp/rendered.yaml"

out="$XDG_RUNTIME_DIR/apiserver-proxy/webhook-cert"
[ "$(stat -c %a "$out")" = 700 ] || fail "$out is not private (mode $(stat -c %a "$out"))"
[ "$(stat -c %a "$out/ca.key")" = 600 ] && [ "$(stat -c %a "$out/tls.key")" = 600 ] || fail "keys are not 0600"
for v in 1.29.0 1.37.0; do
  "$bin/kubernetes-validate" --strict --quiet --no-warn -k "$v" "$tmp/rendered.yaml" || fail "the rendering does not validate against Kubernetes $v"
done
"$bin/python" - "$tmp/rendered.yaml" "$out" <<'PY'
import base64, sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
(secret,) = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "apiserver-proxy-pod-webhook-tls"]
assert secret["metadata"]["namespace"] == "apiserver-proxy" and secret["type"] == "kubernetes.io/tls", secret["metadata"]
for key in ("tls.crt", "tls.key", "ca.crt"):
    assert base64.b64decode(secret["data"][key]) == open(f"{out}/{key}", "rb").read(), f"Secret {key} differs from {out}/{key}"
(mwc,) = [d for d in docs if d["kind"] == "MutatingWebhookConfiguration"]
bundle = base64.b64decode("".join(mwc["webhooks"][0]["clientConfig"]["caBundle"].split()))
assert bundle == open(f"{out}/ca.crt", "rb").read(), "caBundle is not ca.crt"
print("test-webhook-cert: ok: the Secret holds the pair, caBundle the CA")
PY
openssl verify -CAfile "$out/ca.crt" -verify_hostname apiserver-proxy-pod-webhook.apiserver-proxy.svc "$out/tls.crt" >/dev/null ||
  fail "tls.crt does not verify against ca.crt for the Service's name"

ca="$(sha256sum <"$out/ca.crt")" crt="$(sha256sum <"$out/tls.crt")"
scripts/webhook-cert.sh >/dev/null
[ "$(sha256sum <"$out/ca.crt")" = "$ca" ] || fail "a second run replaced the CA"
[ "$(sha256sum <"$out/tls.crt")" != "$crt" ] || fail "a second run did not renew the serving certificate"
echo "test-webhook-cert: ok: a second run keeps the CA and renews the certificate"

for inside in certs "$root/deploy/webhook/certs"; do
  if scripts/webhook-cert.sh "$inside" >/dev/null 2>&1; then fail "wrote keys into the repository ($inside)"; fi
done
echo "test-webhook-cert: ok: a directory inside the repository is refused"

after="$(git status --porcelain)"
[ "$after" = "$before" ] || fail "the work tree changed: $(diff <(echo "$before") <(echo "$after"))"
echo "test-webhook-cert: ok: git status unchanged"
