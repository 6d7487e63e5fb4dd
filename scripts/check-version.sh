#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# One version, one place: the workspace version in Cargo.toml. Fails unless every place that
# repeats it agrees: both crates in Cargo.lock, the Makefile's VERSION (the image tags of
# `make docker-images` and the APISERVER_PROXY_VERSION build argument), and the tag of every
# apiserver-proxy image in every rendering of deploy/ (kustomize images:, newTag).
#
#   scripts/check-version.sh [DIR]   (DIR: a checkout, default this one; the self-test uses a copy)
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "${1:-$here}" && pwd)"
bin="$("$here/scripts/ci-venv.sh")"
cd "$root"
bad=0
fail() { echo "check-version: ERROR: $*" >&2; bad=1; }

version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
[ -n "$version" ] || { echo "check-version: no version in [workspace.package] of Cargo.toml" >&2; exit 1; }
echo "check-version: Cargo.toml: $version"

for crate in apiserver-proxy-sidecar apiserver-proxy-pod-webhook; do
  v="$(awk -v n="name = \"$crate\"" '$0 == n { getline; gsub(/version = |"/, ""); print }' Cargo.lock)"
  [ "$v" = "$version" ] || fail "Cargo.lock has $crate $v (cargo update -p $crate --offline)"
done

v="$(make -s --no-print-directory -C "$root" print-version)"
[ "$v" = "$version" ] || fail "the Makefile's VERSION is $v"
tags="$(make -s --no-print-directory -C "$root" print-image-tags)"
[ "$(wc -l <<<"$tags")" = 2 ] || fail "make docker-images does not tag two images: $tags"
while read -r tag; do
  [ "${tag##*:}" = "$version" ] || fail "make docker-images tags $tag"
  grep -q -- "--build-arg VERSION=$version " <(make -s -n --no-print-directory -C "$root" docker-images) ||
    fail "make docker-images does not pass --build-arg VERSION=$version"
done <<<"$tags"

n=0
for k in $(find deploy -name kustomization.yaml | sort); do
  kdir="$(dirname "$k")"
  grep -q '^kind: Component' "$k" && continue
  images="$("$bin/kubectl" kustomize "$kdir" | sed -n 's/^ *image: *//p' | tr -d '"' | grep 'apiserver-proxy' || true)"
  while read -r image; do
    [ -n "$image" ] || continue
    n=$((n + 1))
    [ "${image##*:}" = "$version" ] || fail "kustomize $kdir renders $image (set newTag: $version under images: in its kustomization)"
  done <<<"$images"
done
[ "$n" -gt 0 ] || fail "no apiserver-proxy image found in any rendering of deploy/"
[ "$bad" = 0 ] || exit 1
echo "check-version: Cargo.lock, make docker-images and $n images in deploy/ renderings all at $version"
