#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Creates (or reuses) a private Python venv with the pinned tools of scripts/requirements-ci.txt
# and prints its bin/ directory. Reinstalls when the requirements file changes.
# Override the location with APISERVER_PROXY_CI_VENV.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
req="$root/scripts/requirements-ci.txt"
venv="${APISERVER_PROXY_CI_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/apiserver-proxy/ci-venv}"
python="${PYTHON:-python3}"

stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
if [ ! -x "$venv/bin/python" ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "ci-venv: installing $(grep -vc '^\s*\(#\|$\)' "$req") pinned tools into $venv" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$req" >&2
  echo "$want" >"$stamp"
fi
echo "$venv/bin"
