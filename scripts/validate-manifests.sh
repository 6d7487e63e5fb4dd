#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Validates every Kubernetes manifest under deploy/ (or DIR) offline:
#   1. renders each kustomization with the kustomize built into the pinned kubectl;
#   2. validates every rendering with kubernetes-validate (strict: unknown fields are errors)
#      against the Kubernetes OpenAPI schemas it ships, for each of KUBERNETES_VERSIONS.
#      Objects of CRDs have no schema there; kubernetes-validate warns and passes them. Those of
#      the groups in CRD_GROUPS (cert-manager, the Prometheus operator) are reported as skipped,
#      any other missing schema (a typo in apiVersion or kind) is an error;
#   3. runs our own policy checks on the renderings (scripts/validate_manifests.py).
# Every file under deploy/ reaches some rendering (validate_manifests.py fails on one that does
# not), so step 2 covers them all. Fails on any error and when it finds no manifest.
#
#   scripts/validate-manifests.sh [DIR]
# Tools come from scripts/requirements-ci.txt (installed into a private venv on first use).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
deploy="$(cd "${1:-$root/deploy}" && pwd)"
bin="$("$root/scripts/ci-venv.sh")"
versions="${KUBERNETES_VERSIONS:-1.29.0,1.37.0}"
CRD_GROUPS='cert-manager.io|monitoring.coreos.com'
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$bin/kubectl" version --client=true 2>/dev/null | sed 's/^/validate-manifests: /'

errors=0 renderings=()
while read -r k; do
  kdir="$(dirname "$k")"
  grep -q '^kind: *Component' "$k" && continue # rendered by the kustomizations that use it
  name="$(realpath --relative-to="$deploy/.." "$kdir" | tr / _)"
  if ! "$bin/kubectl" kustomize "$kdir" >"$tmp/$name.yaml" 2>"$tmp/err"; then
    echo "ERROR: kubectl kustomize $kdir failed: $(cat "$tmp/err")" >&2
    errors=$((errors + 1)); rm -f "$tmp/$name.yaml"; continue
  fi
  renderings+=("$tmp/$name.yaml")
done < <(find "$deploy" -name kustomization.yaml | sort)

# deploy/ with a serving certificate of one's own, as docs/deploying.md's "Installing" makes it: the
# kustomization scripts/webhook-cert.sh writes (outside the tree), with throwaway keys.
also=()
if [ -f "$deploy/components/own-certificate/kustomization.yaml" ]; then
  DEPLOY_DIR="$deploy" "$root/scripts/webhook-cert.sh" "$tmp/webhook-cert" >/dev/null
  if "$bin/kubectl" kustomize "$tmp/webhook-cert" >"$tmp/webhook-cert.yaml" 2>"$tmp/err"; then
    renderings+=("$tmp/webhook-cert.yaml"); also=(--also-render "$tmp/webhook-cert")
  else
    echo "ERROR: kubectl kustomize of what scripts/webhook-cert.sh writes failed: $(cat "$tmp/err")" >&2
    errors=$((errors + 1))
  fi
fi

if [ "${#renderings[@]}" -gt 0 ]; then
  for v in ${versions//,/ }; do
    out="$("$bin/kubernetes-validate" --strict --quiet -k "$v" "${renderings[@]}" 2>&1)" || errors=$((errors + 1))
    while read -r line; do
      [ -n "$line" ] || continue
      if grep -Eq "^WARN .*Couldn't find schema for kind \S+ with api version ($CRD_GROUPS)/" <<<"$line"; then
        echo "SKIPPED (CRD, no schema in kubernetes-validate; checked by the policy checks): ${line#WARN $tmp/}"
      else
        echo "ERROR: ${line#* $tmp/}" >&2
        errors=$((errors + 1))
      fi
    done <<<"$out"
  done
  echo "validate-manifests: ${#renderings[@]} renderings validated by kubernetes-validate --strict against Kubernetes ${versions//,/, }"
fi

"$bin/python" "$root/scripts/validate_manifests.py" "$deploy" --kubectl "$bin/kubectl" "${also[@]}" || errors=$((errors + 1))
[ "$errors" -eq 0 ] || { echo "validate-manifests: FAILED" >&2; exit 1; }
