#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Validates every Kubernetes manifest under deploy/ offline: renders each kustomization with the
# kustomize built into the pinned kubectl, validates every resource file and every rendering
# against the Kubernetes OpenAPI schemas shipped by kubernetes-validate, and checks the policies
# issue 4 asks for. Fails on any error and when it finds no manifest.
# Tools come from scripts/requirements-ci.txt (installed into a private venv on first use).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/ci-venv.sh")"
"$bin/kubectl" version --client=true 2>/dev/null | sed 's/^/validate-manifests: /'
exec "$bin/python" "$root/scripts/validate_manifests.py" "$root/deploy" --kubectl "$bin/kubectl" \
  --kubernetes-versions "${KUBERNETES_VERSIONS:-1.29.0,1.37.0}"
