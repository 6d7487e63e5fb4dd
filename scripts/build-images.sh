#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Both images for linux/amd64 and linux/arm64 without a Docker engine (as root: buildah's
# storage), from Dockerfile.sidecar and Dockerfile.webhook, into one multi-platform OCI archive
# per image:
#   1. scripts/image-build.sh lays out each image's files per platform: natively for this
#      machine's architecture, cross-compiled for the other (no Rust under emulation; the arm64
#      sidecar's iptables and ip are Debian's arm64 packages, checked under qemu);
#   2. `buildah bud --platform linux/ARCH --build-arg FILES=prebuilt` builds each Dockerfile on
#      those files (target/image/ is the build context): no RUN step runs, so no emulation and
#      no BuildKit feature is needed;
#   3. a manifest list per image, written with `buildah manifest push --all` to
#      OUTDIR/apiserver-proxy-{sidecar,pod-webhook}-VERSION.oci.tar (oci-archive).
# Push an archive to any registry with skopeo (docs/deploying.md, "Building the images").
#
#   scripts/build-images.sh [OUTDIR]      (default target/oci)
# Environment: IMAGE_REGISTRY (default localhost), VERSION (default Cargo.toml's), PLATFORMS
# (default linux/amd64,linux/arm64), SIDECAR_BASE and WEBHOOK_BASE (default the Dockerfiles'
# distroless bases, pulled by buildah). STANDIN_BASES=1 builds local stand-ins for those bases
# instead, for a machine that cannot reach their registry: scratch with the files the binaries
# need of them (/etc/passwd with root and nonroot, /tmp; for the webhook glibc and libgcc_s of
# the platform's Debian), tagged localhost/apiserver-proxy-standin-{static,cc}:ARCH.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/images-env.sh
. "$root/scripts/images-env.sh" "$@"
platforms="${PLATFORMS:-linux/amd64,linux/arm64}"
start=$SECONDS
note() { echo "build-images: $*"; }
fail() { echo "build-images: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (buildah's storage, the sidecar's checks)"
command -v buildah >/dev/null || fail "buildah missing (Debian: apt-get install buildah)"
mkdir -p "$out"

host_arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$host_arch" in x86_64) host_arch=amd64 ;; aarch64) host_arch=arm64 ;; esac
triple() { case "$1" in amd64) echo x86_64-unknown-linux-gnu ;; arm64) echo aarch64-unknown-linux-gnu ;; *) fail "platform linux/$1: only amd64 and arm64" ;; esac; }

# standin KIND ARCH: a local stand-in for distroless/static or distroless/cc (see above).
standin() {
  local kind="$1" arch="$2" name="localhost/apiserver-proxy-standin-$1:$2" dir="$target_dir/image/standin-$1-$2"
  rm -rf "$dir" && mkdir -p "$dir/etc" "$dir/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$dir/etc/passwd"
  printf 'root:x:0:\nnonroot:x:65532:\n' >"$dir/etc/group"
  chmod 1777 "$dir/tmp"
  if [ "$kind" = cc ]; then
    local sys="" libdir
    if [ "$arch" != "$host_arch" ]; then sys="$target_dir/debian-$arch/root"; fi
    [ -z "$sys" ] || [ -d "$sys" ] || fail "no Debian $arch packages in $sys (scripts/image-build.sh sidecar --target makes them)"
    case "$arch" in amd64) libdir=lib/x86_64-linux-gnu ;; arm64) libdir=lib/aarch64-linux-gnu ;; esac
    # Relative links, so that the files also run under qemu-user with the image as its root (-L).
    mkdir -p "$dir/$libdir" "$dir/lib64"
    for lib in libc.so.6 libm.so.6 libgcc_s.so.1; do
      cp -L "$(find "$sys/$libdir" "$sys/usr/$libdir" -maxdepth 1 -name "$lib" | head -n 1)" "$dir/$libdir/$lib"
    done
    case "$arch" in
      amd64) cp -L "$sys/$libdir/ld-linux-x86-64.so.2" "$dir/$libdir/"; ln -sf "../$libdir/ld-linux-x86-64.so.2" "$dir/lib64/ld-linux-x86-64.so.2" ;;
      arm64) cp -L "$(find "$sys/$libdir" "$sys/usr/$libdir" -maxdepth 1 -name ld-linux-aarch64.so.1 | head -n 1)" "$dir/$libdir/"
             ln -sf "aarch64-linux-gnu/ld-linux-aarch64.so.1" "$dir/lib/ld-linux-aarch64.so.1" ;;
    esac
  fi
  local c
  c="$(buildah from --arch "$arch" --os linux scratch)"
  buildah copy -q "$c" "$dir" / >/dev/null
  buildah config --arch "$arch" --os linux "$c"
  buildah commit -q --rm "$c" "$name" >/dev/null
  echo "$name"
}

IFS=, read -r -a plats <<<"$platforms"
for component in sidecar webhook; do
  case "$component" in
    sidecar) name=apiserver-proxy-sidecar; base_var="${SIDECAR_BASE:-}"; standin_kind=static ;;
    webhook) name=apiserver-proxy-pod-webhook; base_var="${WEBHOOK_BASE:-}"; standin_kind=cc ;;
  esac
  list="$registry/$name:$version"
  buildah manifest rm "$list" >/dev/null 2>&1 || true
  buildah manifest create "$list" >/dev/null
  for plat in "${plats[@]}"; do
    arch="${plat#linux/}"
    files="$target_dir/image/$component-linux-$arch"
    if [ "$arch" = "$host_arch" ]; then
      VERSION="$version" scripts/image-build.sh "$component" --out "$files"
    else
      IMAGE_BUILD_FULL_CHECK=0 VERSION="$version" scripts/image-build.sh "$component" --target "$(triple "$arch")" --out "$files"
    fi
    base=()
    if [ "${STANDIN_BASES:-0}" = 1 ]; then
      base=(--pull=never --build-arg "BASE_IMAGE=$(standin "$standin_kind" "$arch")")
    elif [ -n "$base_var" ]; then
      base=(--build-arg "BASE_IMAGE=$base_var")
    fi
    tag="$list-$arch"
    buildah bud -q --layers=false --platform "$plat" -f "Dockerfile.$component" --build-arg FILES=prebuilt \
      --build-arg VERSION="$version" "${base[@]}" -t "$tag" "$target_dir/image" >/dev/null
    got="$(buildah inspect --format '{{.OCIv1.Architecture}}' "$tag")"
    [ "$got" = "$arch" ] || fail "$tag is for $got, not $arch"
    buildah manifest add "$list" "$tag" >/dev/null
    note "$tag: built from Dockerfile.$component ($plat)"
  done
  archive="$out/$name-$version.oci.tar"
  rm -f "$archive"
  buildah manifest push -q --all "$list" "oci-archive:$archive:$version" >/dev/null
  note "$archive: $(du -h "$archive" | cut -f1), platforms ${platforms}"
done
note "done in $((SECONDS - start)) s"
