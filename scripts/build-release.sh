#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The one release build of each binary, used by the images, the benchmarks and `make build`.
# Prints the path of the built binary on stdout (cargo's output goes to stderr).
#
#   scripts/build-release.sh <apiserver-proxy-sidecar|apiserver-proxy-pod-webhook> [--target TRIPLE]
#
# The sidecar runs on every node, so it is built for a small resident set: the `node` profile
# (optimised for size) and a static, non-PIE executable, which needs no shared library and has
# no relocations to dirty at start-up. It never resolves host names, so static glibc is safe.
#
# --target cross-compiles (default: the host). For aarch64-unknown-linux-gnu from another host
# it links with Debian's aarch64-linux-gnu-gcc (packages gcc-aarch64-linux-gnu and
# libc6-dev-arm64-cross) unless CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER says otherwise.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
package="${1:?usage: $0 <package> [--target TRIPLE]}"
shift
host="$(rustc -vV | sed -n 's/^host: //p')"
target="$host"
while [ $# -gt 0 ]; do
  case "$1" in
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    *) echo "build-release: unknown argument $1" >&2; exit 2 ;;
  esac
done
cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
if [ "$target" != "$host" ]; then
  case "$target" in
    aarch64-unknown-linux-gnu)
      export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER="${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}"
      export CC_aarch64_unknown_linux_gnu="${CC_aarch64_unknown_linux_gnu:-aarch64-linux-gnu-gcc}"
      ;;
  esac
fi
case "$package" in
  apiserver-proxy-sidecar)
    RUSTFLAGS="${RUSTFLAGS:-} -C relocation-model=static -C target-feature=+crt-static" \
      cargo build --profile node --locked -p "$package" --bin "$package" --target "$target" >&2
    echo "$target_dir/$target/node/$package"
    ;;
  apiserver-proxy-pod-webhook)
    if [ "$target" = "$host" ]; then
      # The host build without --target: its binary stays at target/release/, where the
      # benchmarks and tests look for it.
      cargo build --release --locked -p "$package" --bin "$package" >&2
      echo "$target_dir/release/$package"
    else
      cargo build --release --locked -p "$package" --bin "$package" --target "$target" >&2
      echo "$target_dir/$target/release/$package"
    fi
    ;;
  *) echo "build-release: unknown package $package" >&2; exit 2 ;;
esac
