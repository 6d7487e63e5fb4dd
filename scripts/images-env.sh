# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The settings scripts/build-images.sh and scripts/test-images.sh share, sourced by both from
# the repository's root (`root` set) with their own arguments: the OCI directory (first
# argument, default target/oci), the registry (IMAGE_REGISTRY, default localhost) and the
# version (VERSION, default the workspace's in Cargo.toml).
target_dir="${CARGO_TARGET_DIR:-$root/target}"
out="${1:-$target_dir/oci}"
registry="${IMAGE_REGISTRY:-localhost}"
version="${VERSION:-$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)}"
