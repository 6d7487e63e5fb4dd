#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The one release build of each binary, used by the images, the benchmarks and `make build`.
# Prints the path of the built binary on stdout (cargo's output goes to stderr).
#
#   scripts/build-release.sh <apiserver-proxy-sidecar|apiserver-proxy-pod-webhook>
#
# The sidecar runs on every node, so it is built for a small resident set: the `node` profile
# (optimised for size) and a static, non-PIE executable, which needs no shared library and has
# no relocations to dirty at start-up. It never resolves host names, so static glibc is safe.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
package="${1:?usage: $0 <package>}"
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
case "$package" in
  apiserver-proxy-sidecar)
    host="$(rustc -vV | sed -n 's/^host: //p')"
    RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static -C target-feature=+crt-static" \
      cargo build --profile node --locked -p "$package" --bin "$package" --target "$host" >&2
    echo "$target_dir/$host/node/$package"
    ;;
  apiserver-proxy-pod-webhook)
    cargo build --release --locked -p "$package" --bin "$package" >&2
    echo "$target_dir/release/$package"
    ;;
  *) echo "build-release: unknown package $package" >&2; exit 2 ;;
esac
