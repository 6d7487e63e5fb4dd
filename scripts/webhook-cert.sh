#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Makes a private CA and a serving certificate for the webhook's Service, for deployments
# without cert-manager, and a kustomization that deploys them with deploy/:
#
#   scripts/webhook-cert.sh [OUTDIR [NAMESPACE [SERVICE [DAYS]]]]
#   kubectl apply -k OUTDIR
#
# OUTDIR defaults to ${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert (private, mode 0700).
# Keys never go into a repository: an OUTDIR inside a git work tree is refused unless git
# ignores it. Writes OUTDIR/ca.crt, ca.key, tls.crt, tls.key (EC P-256; the certificate is
# valid for SERVICE.NAMESPACE.svc and SERVICE.NAMESPACE.svc.cluster.local, for DAYS days,
# default 365) and OUTDIR/kustomization.yaml: deploy/ (by a relative path; DEPLOY_DIR overrides,
# e.g. DEPLOY_DIR=deploy/overlays/mycluster for an overlay of it)
# with the component deploy/components/own-certificate, the Secret SERVICE-tls made from these
# files instead of the empty placeholder, and caBundle set to ca.crt.
# Running it again with the same OUTDIR keeps the CA and renews only the serving certificate,
# so caBundle stays valid across rotations; keep OUTDIR (at least ca.crt and ca.key) somewhere
# persistent and private if you want that after a reboot.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
out="${1:-${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert}"
ns="${2:-apiserver-proxy}"
svc="${3:-apiserver-proxy-pod-webhook}"
days="${4:-365}"
deploy="${DEPLOY_DIR:-$root/deploy}"
die() { echo "webhook-cert: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "needs openssl"

# Refuse a directory inside a git work tree that git does not ignore: the CA key would end up
# next to the sources, one `git add -A` away from a commit.
probe="$out"
while [ ! -d "$probe" ]; do probe="$(dirname "$probe")"; done
if top="$(git -C "$probe" rev-parse --show-toplevel 2>/dev/null)"; then
  abs="$(realpath -m "$out")"
  if ! git -C "$top" check-ignore -q --no-index "$abs/ca.key"; then
    die "refusing to write keys into the git work tree $top ($abs is not ignored); use a directory outside it (default: \${XDG_RUNTIME_DIR:-/tmp}/apiserver-proxy/webhook-cert)"
  fi
fi

umask 077
mkdir -p "$out"
if [ ! -s "$out/ca.key" ] || [ ! -s "$out/ca.crt" ]; then
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
    -keyout "$out/ca.key" -out "$out/ca.crt" -days 3650 \
    -subj "/CN=$svc CA" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
fi
openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:P-256 \
  -keyout "$out/tls.key" -out "$out/tls.csr" -subj "/CN=$svc.$ns.svc" 2>/dev/null
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -days "$days" -out "$out/tls.crt" -extfile <(printf '%s\n' \
    "subjectAltName=DNS:$svc.$ns.svc,DNS:$svc.$ns.svc.cluster.local" \
    "extendedKeyUsage=serverAuth" \
    "keyUsage=critical,digitalSignature" \
    "basicConstraints=critical,CA:FALSE") 2>/dev/null
rm -f "$out/tls.csr" "$out/ca.srl"
chmod 0644 "$out/ca.crt" "$out/tls.crt"

rel="$(realpath --relative-to="$out" "$deploy")"
# deploy/ itself, or an overlay of it (deploy/overlays/NAME): the component is deploy/'s.
component="$deploy/components/own-certificate"
[ -d "$component" ] || component="$deploy/../../components/own-certificate"
[ -d "$component" ] || die "no components/own-certificate beside $deploy"
component="$(realpath --relative-to="$out" "$component")"
cat >"$out/kustomization.yaml" <<YAML
# Made by scripts/webhook-cert.sh: deploy/ with this directory's serving certificate.
#   kubectl apply -k $out
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel
components:
  - $component
secretGenerator:
  # Replaces the empty placeholder deploy/webhook/secret.yaml; ca.crt is public and becomes
  # the MutatingWebhookConfiguration's caBundle (the component's replacement).
  - name: $svc-tls
    namespace: $ns
    behavior: replace
    type: kubernetes.io/tls
    files:
      - tls.crt
      - tls.key
      - ca.crt
    options:
      disableNameSuffixHash: true
YAML
echo "webhook-cert: $out/tls.crt for $svc.$ns.svc, signed by $out/ca.crt; deploy with: kubectl apply -k $out"
