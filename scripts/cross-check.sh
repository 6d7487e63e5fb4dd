#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The arm64 images' binaries, without Docker: cross-builds both for aarch64 with the images'
# release builds (scripts/image-build.sh --target, which runs scripts/build-release.sh --target
# and checks --version and the webhook's libraries), then under qemu-aarch64:
#   - each binary's --help;
#   - the webhook started as `make run` starts it (its RUN_ARGS: the certificates in testdata/,
#     127.0.0.1 only, no shutdown delay), README.md's "Try it" request (the curl command as the
#     README writes it) answered with exactly the README's output, listening on loopback only,
#     and Ctrl-C (SIGINT) stopping it at once.
# Installs what it needs when missing (as root, Debian): gcc-aarch64-linux-gnu,
# libc6-dev-arm64-cross, qemu-user, curl, jq, and the rustup target.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
target=aarch64-unknown-linux-gnu
target_dir="${CARGO_TARGET_DIR:-$root/target}"
start=$SECONDS
note() { echo "cross-check: $*"; }
fail() { echo "cross-check: FAIL: $*" >&2; exit 1; }

need=()
command -v aarch64-linux-gnu-gcc >/dev/null || need+=(gcc-aarch64-linux-gnu)
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
command -v qemu-aarch64 >/dev/null || need+=(qemu-user)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    fail "missing ${need[*]} (Debian: apt-get install ${need[*]})"
  fi
  note "installing ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
qemu=(qemu-aarch64 -L /usr/aarch64-linux-gnu)

# --- the images' release builds, for aarch64 --------------------------------------------------
for component in sidecar webhook; do
  IMAGE_BUILD_FULL_CHECK=0 scripts/image-build.sh "$component" --target "$target"
done
sidecar="$target_dir/image/sidecar-$target/usr/local/bin/apiserver-proxy-sidecar"
webhook="$target_dir/image/webhook-$target/usr/local/bin/apiserver-proxy-pod-webhook"
for bin in "$sidecar" "$webhook"; do
  [ "$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')" = AArch64 ] || fail "$bin is not an aarch64 binary"
  help="$("${qemu[@]}" "$bin" --help)" || fail "$(basename "$bin") --help failed under qemu"
  grep -q -- '--help' <<<"$help" || fail "$(basename "$bin") --help printed no help: $help"
  note "$(basename "$bin") --help runs under qemu-aarch64 ($(wc -l <<<"$help") lines)"
done
note "built in $((SECONDS - start)) s"

# --- the webhook as `make run` runs it, README's request ---------------------------------------
read -r -a args <<<"$(make -s --no-print-directory print-run-args)"
log="$(mktemp)" pid=""
trap 'kill "$pid" 2>/dev/null || true; rm -f "$log"' EXIT
"${qemu[@]}" "$webhook" "${args[@]}" >"$log" 2>&1 &
pid=$!
for _ in $(seq 100); do
  curl -s --cacert testdata/ca.crt https://127.0.0.1:9443/readyz >/dev/null && break
  kill -0 "$pid" 2>/dev/null || fail "the webhook exited: $(cat "$log")"
  sleep 0.1
done
listen="$(ss -Hltn 'sport = :9443' | awk '{ print $4 }' | sort -u)"
[ "$listen" = "127.0.0.1:9443" ] || fail "make run's webhook listens on ${listen//$'\n'/ }, not on 127.0.0.1:9443 alone"
note "the webhook (make run's arguments: ${args[*]}) listens on $listen only"

# README's "Try it": the curl command and the output it shows, as written there.
readme="$(mktemp -d)"
python3 "$root/scripts/readme-try-it.py" "$root/README.md" "$readme"
bash -eo pipefail "$readme/request.sh" >"$readme/got.json" || fail "README's request failed: $(cat "$log")"
python3 -c '
import json, sys
sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)
' "$readme/got.json" "$readme/expected.json" ||
  fail "the answer differs from README's output: $(cat "$readme/got.json")"
note "README's \"Try it\" request gets README's output from the aarch64 webhook"
rm -rf "$readme"

# Ctrl-C stops it at once: no shutdown delay, nothing in flight.
t0=$(date +%s%N)
kill -INT "$pid"
for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
kill -0 "$pid" 2>/dev/null && fail "the webhook still runs 1 s after SIGINT (make run must stop at once)"
wait "$pid" || fail "the webhook exited with $? after SIGINT: $(cat "$log")"
note "SIGINT stopped it in $(( ($(date +%s%N) - t0) / 1000000 )) ms"
note "done in $((SECONDS - start)) s"
