#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# docs/sidecar.md's "Try it", as written there (as root): extracts its sh block, runs it, and
# checks what it shows (the address on lo, the five rules) and that it leaves
# nothing behind (the namespace is gone).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
fail() { echo "test-sidecar-example: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (it creates a network namespace)"
tmp="$(mktemp -d)"
trap 'ip netns delete sidecar-try 2>/dev/null || true; rm -rf "$tmp"' EXIT
python3 - docs/sidecar.md "$tmp/try.sh" <<'PY'
import re, sys
section = open(sys.argv[1]).read().split("\n## Try it\n", 1)[1].split("\n## ", 1)[0]
(block,) = re.findall(r"```sh\n(.*?)```", section, re.S)
open(sys.argv[2], "w").write(block)
PY
bash -euo pipefail "$tmp/try.sh" >"$tmp/out" 2>&1 || { cat "$tmp/out"; fail "the example failed"; }
grep -q 'inet 198.18.0.2/32 scope global lo' "$tmp/out" || { cat "$tmp/out"; fail "ip addr did not show the address"; }
rules="$(grep -c -- '^-A .*198.18.0.2/32' "$tmp/out" || true)"
[ "$rules" -eq 5 ] || { cat "$tmp/out"; fail "iptables-save showed $rules rules for 198.18.0.2, not 5"; }
ip netns list | grep -qw sidecar-try && fail "the namespace is left"
echo "test-sidecar-example: ok: docs/sidecar.md's example runs as written: the address, 5 rules, all removed"
