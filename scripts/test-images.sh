#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The images scripts/build-images.sh built, run for real with podman (as root), without a
# Docker engine and without a registry:
#   - both OCI archives hold linux/amd64 and linux/arm64 images; skopeo copies each, all
#     platforms, to a local OCI layout (what `skopeo copy --all oci-archive:... docker://...`
#     does towards a registry, without the network);
#   - the other platform's images (arm64 here): their binaries and the sidecar's iptables run
#     from the image's files under qemu-user (--version), the image's own loader and libraries;
#   - the sidecar image of this machine's platform as a container in a network namespace this
#     script creates, with exactly the capabilities and security settings deploy/ gives the
#     sidecar (read from its DaemonSet: capabilities, user, read-only root, /run as tmpfs, the
#     xtables lock mounted), first as the init container runs (--daemon=false: the address on
#     the dummy link and the five rules are there afterwards), then as a daemon with --cleanup
#     (ready on /readyz; stopped with SIGTERM, it removes what it created);
#   - the webhook image as deploy/ runs it (user 65532, read-only root, no capabilities) with
#     the certificates of testdata/ mounted, answering README's "Try it" request with README's
#     output.
#
#   scripts/test-images.sh [OUTDIR]      (default target/oci, where build-images.sh wrote)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
# shellcheck source=scripts/images-env.sh
. "$root/scripts/images-env.sh" "$@"
bin="$("$root/scripts/ci-venv.sh")"
tmp="$(mktemp -d)"
ns="apiserver-proxy-images-$$"
containers=()
finish() {
  for c in "${containers[@]}"; do podman rm -f -t 0 "$c" >/dev/null 2>&1 || true; done
  ip netns delete "$ns" 2>/dev/null || true
  rm -rf "$tmp"
}
trap finish EXIT
note() { echo "test-images: $*"; }
fail() { echo "test-images: FAIL: $*" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || fail "run as root (podman, network namespaces)"
for tool in podman skopeo; do command -v "$tool" >/dev/null || fail "$tool missing (Debian: apt-get install $tool)"; done
host_arch="$(dpkg --print-architecture 2>/dev/null || uname -m)"
case "$host_arch" in x86_64) host_arch=amd64 ;; aarch64) host_arch=arm64 ;; esac
ip_address=198.18.0.2
# podman's runtime: crun refuses a host with hybrid cgroups (v1 controllers and a v2 hierarchy
# holding some), which runc handles; and podman's default rlimits (raised above the host's) can
# be refused where the host caps them, so the containers get limits below any cap.
podman=(podman)
if command -v runc >/dev/null; then podman=(podman --runtime runc); fi
limits=(--ulimit nofile=1024:1024 --ulimit nproc=1024:1024)

# --- the archives -----------------------------------------------------------------------------
for name in apiserver-proxy-sidecar apiserver-proxy-pod-webhook; do
  archive="$out/$name-$version.oci.tar"
  [ -f "$archive" ] || fail "$archive missing: run scripts/build-images.sh first"
  skopeo copy -q --all "oci-archive:$archive:$version" "oci:$tmp/layout:$name-$version" ||
    fail "skopeo cannot copy $archive"
  platforms="$(skopeo inspect --raw "oci:$tmp/layout:$name-$version" | "$bin/python" -c '
import json, sys
print(" ".join(sorted(m["platform"]["os"] + "/" + m["platform"]["architecture"] for m in json.load(sys.stdin)["manifests"])))')"
  [ "$platforms" = "linux/amd64 linux/arm64" ] || fail "$archive holds $platforms, not linux/amd64 and linux/arm64"
  for arch in amd64 arm64; do
    entry="$(skopeo inspect --override-arch "$arch" "oci:$tmp/layout:$name-$version" | "$bin/python" -c '
import json, sys; d = json.load(sys.stdin); print(d["Architecture"])')"
    [ "$entry" = "$arch" ] || fail "$archive: the $arch entry is for $entry"
  done
  note "$archive: linux/amd64 and linux/arm64; skopeo copies it (all platforms) to an OCI layout"
done

# --- the other platform's images: their files run under qemu-user (no binfmt needed) ------------
other=arm64; [ "$host_arch" = arm64 ] && other=amd64
qarch=aarch64; [ "$other" = amd64 ] && qarch=x86_64
if command -v "qemu-$qarch" >/dev/null; then
  for name in apiserver-proxy-sidecar apiserver-proxy-pod-webhook; do
    c="$(buildah from -q --arch "$other" "$registry/$name:$version-$other")"
    m="$(buildah mount "$c")"
    v="$("qemu-$qarch" -L "$m" "$m/usr/local/bin/$name" --version 2>&1)" || { buildah rm "$c" >/dev/null; fail "$name ($other) does not run from its image under qemu: $v"; }
    [ "$v" = "$name $version" ] || { buildah rm "$c" >/dev/null; fail "$name ($other) --version says $v"; }
    if [ "$name" = apiserver-proxy-sidecar ]; then
      for tool in iptables-nft-save iptables-legacy-save ip6tables-legacy-save; do
        "qemu-$qarch" -L "$m" "$m/usr/sbin/$tool" --version >/dev/null 2>&1 || { buildah rm "$c" >/dev/null; fail "$tool ($other) does not run from the sidecar image under qemu"; }
      done
    fi
    buildah umount "$c" >/dev/null; buildah rm "$c" >/dev/null
    note "$name:$version-$other: its files run under qemu-$qarch ($v)"
  done
else
  note "NOTE: qemu-$qarch missing (Debian: qemu-user): the $other images' files are not run here"
fi

# --- the sidecar, as deploy/ runs it -----------------------------------------------------------
sidecar="$registry/apiserver-proxy-sidecar:$version-$host_arch"
webhook="$registry/apiserver-proxy-pod-webhook:$version-$host_arch"
# The sidecar container of deploy/'s DaemonSet: its capabilities, user and read-only root.
read -r caps user readonly < <("$bin/kubectl" kustomize deploy | "$bin/python" -c '
import sys, yaml
(ds,) = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "DaemonSet"]
(c,) = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == "sidecar"]
sc = c["securityContext"]
assert sc["capabilities"]["drop"] == ["ALL"] and not sc.get("privileged") and sc["allowPrivilegeEscalation"] is False
print(",".join(sc["capabilities"]["add"]), sc["runAsUser"], str(sc["readOnlyRootFilesystem"]).lower())')
[ "$readonly" = true ] || fail "deploy/'s sidecar has no read-only root: this test would not run it as deployed"
run_as_deployed=("${limits[@]}" --network "ns:/run/netns/$ns" --cap-drop=all --cap-add="$caps" --user "$user"
  --read-only --tmpfs /run:rw,size=1m --security-opt no-new-privileges
  -v "$tmp/xtables.lock:/run/xtables.lock")
: >"$tmp/xtables.lock"
ip netns add "$ns"
ip netns exec "$ns" ip link set lo up
in_ns() { ip netns exec "$ns" "$@"; }
our_rules() { { in_ns iptables-nft-save; in_ns iptables-legacy-save; } 2>/dev/null | grep -cF -- "$ip_address" || true; }
# deploy/'s dummy link where the kernel has the driver (CONFIG_DUMMY), else lo.
dev=lo
if in_ns ip link add probe type dummy 2>/dev/null; then in_ns ip link del probe; dev=apiserver-proxy; fi
[ "$dev" = lo ] && note "NOTE: this kernel cannot create dummy links (no CONFIG_DUMMY): the sidecar keeps the address on lo"
flags=(--ip-address="$ip_address" --interface="$dev" --manage-interface --setup-iptables --port=443)

"${podman[@]}" run --rm --name "apiserver-proxy-setup-$$" "${run_as_deployed[@]}" "$sidecar" "${flags[@]}" --daemon=false \
  >"$tmp/setup.log" 2>&1 || fail "the sidecar image failed as the init container: $(cat "$tmp/setup.log")"
in_ns ip -o addr show dev "$dev" | grep -q "inet $ip_address/32 scope global" ||
  fail "no $ip_address on $dev after the init container: $(in_ns ip -o addr)"
[ "$(our_rules)" -eq 5 ] || fail "$(our_rules) rules for $ip_address after the init container, not 5"
note "sidecar image, capabilities $caps only, user $user, read-only root: --daemon=false put $ip_address on $dev with its 5 rules"
if [ "$dev" = lo ]; then in_ns ip addr del "$ip_address/32" dev lo; else in_ns ip link del "$dev"; fi
for t in raw filter; do in_ns iptables-nft -t "$t" -F 2>/dev/null || true; in_ns iptables-legacy -t "$t" -F 2>/dev/null || true; done

c="apiserver-proxy-sidecar-$$"
containers+=("$c")
"${podman[@]}" run -d --name "$c" "${run_as_deployed[@]}" "$sidecar" "${flags[@]}" --cleanup \
  --metrics-bind-address=127.0.0.1:16910 >/dev/null || fail "the sidecar image did not start as a daemon"
for _ in $(seq 100); do
  [ "$(in_ns curl -s --max-time 2 http://127.0.0.1:16910/readyz)" = ready ] && break
  sleep 0.2
done
[ "$(in_ns curl -s --max-time 2 http://127.0.0.1:16910/readyz)" = ready ] ||
  fail "the sidecar container is not ready: $(in_ns curl -s http://127.0.0.1:16910/readyz); $(podman logs "$c" 2>&1 | tail -5)"
[ "$(our_rules)" -eq 5 ] || fail "$(our_rules) rules for $ip_address with the daemon running, not 5"
"${podman[@]}" stop -t 20 "$c" >/dev/null
code="$(podman inspect --format '{{.State.ExitCode}}' "$c")"
[ "$code" = 0 ] || fail "the sidecar container exited with $code after SIGTERM: $(podman logs "$c" 2>&1 | tail -5)"
in_ns ip -o addr | grep -qF "$ip_address" && fail "the address is left after SIGTERM with --cleanup"
[ "$(our_rules)" -eq 0 ] || fail "$(our_rules) rules left after SIGTERM with --cleanup"
[ "$dev" = lo ] || ! in_ns ip link show "$dev" >/dev/null 2>&1 || fail "the dummy link is left after SIGTERM with --cleanup"
note "sidecar image as a daemon: ready on /readyz; SIGTERM removed the address and the rules (and a dummy link it made); exit 0"

# --- the webhook, as deploy/ runs it, answering README's request -------------------------------
c="apiserver-proxy-pod-webhook-$$"
containers+=("$c")
mkdir -m 0755 "$tmp/tls"
cp testdata/tls.crt testdata/tls.key testdata/ca.crt "$tmp/tls/" && chmod 0644 "$tmp/tls/"*
"${podman[@]}" run -d --name "$c" "${limits[@]}" --network "ns:/run/netns/$ns" --user 65532:65532 --read-only --cap-drop=all \
  --security-opt no-new-privileges -v "$tmp/tls:/etc/apiserver-proxy-pod-webhook/tls:ro" "$webhook" \
  --apiserver-fqdn=foo.bar. --cert-dir=/etc/apiserver-proxy-pod-webhook/tls --host=127.0.0.1 --port=9443 \
  >/dev/null || fail "the webhook image did not start"
for _ in $(seq 100); do
  in_ns curl -sf --cacert testdata/ca.crt https://localhost:9443/readyz >/dev/null && break
  sleep 0.2
done
"$bin/python" scripts/readme-try-it.py README.md "$tmp"
in_ns bash -eo pipefail "$tmp/request.sh" >"$tmp/got.json" ||
  fail "README's request to the webhook container failed: $(podman logs "$c" 2>&1 | tail -5)"
"$bin/python" -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])) == json.load(open(sys.argv[2])) else 1)' \
  "$tmp/got.json" "$tmp/expected.json" || fail "the webhook container's answer differs from README's: $(cat "$tmp/got.json")"
note "webhook image (user 65532, read-only root, no capabilities) answers README's \"Try it\" request with README's output"
