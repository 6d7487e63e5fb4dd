# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# What the Python-driven script tests share, sourced first thing by each: `root` (the
# repository), `bin` (scripts/ci-venv.sh's bin/ directory), `tmp` (a directory removed on exit)
# and `fail MESSAGE` (says it under the script's name and exits 1).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/ci-venv.sh")"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
fail() { echo "$(basename "$0" .sh): FAIL: $*" >&2; exit 1; }
