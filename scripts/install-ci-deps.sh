#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Installs the Debian packages the packaging checks of .ci/run use, when missing (as root):
#   buildah, podman, skopeo and runc   build the images without a Docker engine, run them, copy
#                                      their archives (make oci-images); runc because crun
#                                      refuses hosts with hybrid cgroups;
#   qemu-user, gcc-aarch64-linux-gnu,  the arm64 build: cross-compiled, never compiled under
#   libc6-dev-arm64-cross              emulation; qemu runs the results (make cross-check);
#   prometheus                         promtool and a real Prometheus (scripts/test-alerts.sh).
# No binfmt registration is needed: nothing runs under emulation inside a build.
# The test tools are scripts/install-test-deps.sh's.
set -euo pipefail
need=()
for pair in buildah:buildah podman:podman skopeo:skopeo runc:runc qemu-aarch64:qemu-user \
  aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu promtool:prometheus prometheus:prometheus; do
  PATH="$PATH:/usr/sbin:/sbin" command -v "${pair%%:*}" >/dev/null 2>&1 || need+=("${pair#*:}")
done
[ -f /usr/aarch64-linux-gnu/lib/libc.a ] || need+=(libc6-dev-arm64-cross)
mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u | grep .) || true
exec "$(dirname "$0")/apt-install.sh" "CI tools" "${need[@]}"
