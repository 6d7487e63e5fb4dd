#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# The build steps of Dockerfile.sidecar and Dockerfile.webhook, runnable without Docker.
# Each Dockerfile runs this very script in its build stage, so the two cannot drift.
#
#   scripts/image-build.sh <sidecar|webhook> [--out DIR] [--target TRIPLE]
#
# 1. scripts/build-release.sh <package> (the one release build), with the version from $VERSION
#    (default: the workspace version in Cargo.toml, as `make docker-images` passes it) in
#    APISERVER_PROXY_VERSION, which the binaries' --version prints.
#    In a Docker build, TARGETARCH (BuildKit's, passed by the Dockerfiles) must match the
#    binary's architecture: the build stage runs natively on the target platform.
# 2. Lays out the final image's files under DIR (default: $CARGO_TARGET_DIR/image/<component>),
#    which the Dockerfile copies onto its base image:
#    - sidecar: the binary, iptables with both backends (xtables-nft-multi, xtables-legacy-multi,
#      every iptables/ip6tables{,-nft,-legacy}{,-save,-restore} name, the xtables extensions),
#      ip from iproute2 (for debugging with kubectl exec) and every shared library they load, so
#      it runs on distroless/static (no libc of its own);
#    - webhook: the binary alone, checked to need nothing beyond what distroless/cc provides
#      (glibc, libgcc_s).
# 3. Checks the result: --version prints the version; for the sidecar, as root, both iptables
#    backends and ip run from DIR in a chroot and, when network namespaces are available, in a
#    throwaway one and with only the capabilities deploy/ gives the sidecar (read from its
#    DaemonSet): the iptables tools write and read the sidecar's kind of rule, ip lists the
#    address, and the sidecar, run as the DaemonSet's init container runs it, creates its dummy
#    link (where the kernel has the driver), address and rules with either backend. NET_RAW is
#    shown to be needed: iptables-legacy fails without it. IMAGE_BUILD_FULL_CHECK=1 (CI) turns
#    a check that cannot run here into a failure.
#
# --target TRIPLE cross-compiles (scripts/build-release.sh --target) into
# DIR (default $CARGO_TARGET_DIR/image/<component>-TRIPLE) and runs the binary under
# qemu-<arch> (package qemu-user). The sidecar's iptables and ip are then that architecture's
# Debian packages (aarch64: arm64), with every package they depend on, fetched with apt-get into
# a private apt state (the system's package lists are left alone) and unpacked, not installed;
# the same files are laid out, found by that architecture's loader under qemu, and the tools
# run from them under qemu.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
component="${1:-}"
shift || true
out=""
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --out=*) out="${1#--out=}"; shift ;;
    --target) target="$2"; shift 2 ;;
    --target=*) target="${1#--target=}"; shift ;;
    *) echo "image-build: unknown argument $1" >&2; exit 2 ;;
  esac
done
case "$component" in
  sidecar) package=apiserver-proxy-sidecar; binary=apiserver-proxy-sidecar ;;
  webhook) package=apiserver-proxy-pod-webhook; binary=apiserver-proxy-pod-webhook ;;
  *) echo "usage: $0 <sidecar|webhook> [--out DIR]" >&2; exit 2 ;;
esac

cd "$root"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
host="$(rustc -vV | sed -n 's/^host: //p')"
[ "$target" != "$host" ] || target=""
out="${out:-$target_dir/image/$component${target:+-$target}}"
full_check="${IMAGE_BUILD_FULL_CHECK:-0}"

cargo_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' Cargo.toml)"
VERSION="${VERSION:-$cargo_version}"
export APISERVER_PROXY_VERSION="$VERSION"

note() { echo "image-build: $*"; }
fail() { echo "image-build: ERROR: $*" >&2; exit 1; }
cannot() { # a check that cannot run on this machine
  if [ "$full_check" = 1 ]; then fail "$* (IMAGE_BUILD_FULL_CHECK=1)"; fi
  note "NOTE: not checked: $*"
}

# --- 1. build -------------------------------------------------------------------------------
note "$component: APISERVER_PROXY_VERSION=$VERSION scripts/build-release.sh $package${target:+ --target $target}"
bin="$("$root/scripts/build-release.sh" "$package" ${target:+--target "$target"})"
[ -x "$bin" ] || fail "$bin was not built"
machine="$(readelf -h "$bin" | sed -n 's/^ *Machine: *//p')"
run=() # how to run the binary here: directly, or under qemu for another architecture
if [ -n "$target" ]; then
  arch="${target%%-*}"
  command -v "qemu-$arch" >/dev/null || fail "qemu-$arch missing (Debian: apt-get install qemu-user)"
  run=("qemu-$arch" -L "/usr/$arch-linux-gnu")
fi
if [ -n "${TARGETARCH:-}" ]; then
  case "$TARGETARCH" in
    amd64) want="Advanced Micro Devices X86-64" ;;
    arm64) want="AArch64" ;;
    *) fail "TARGETARCH=$TARGETARCH: only amd64 and arm64 are built" ;;
  esac
  [ "$machine" = "$want" ] || fail "TARGETARCH=$TARGETARCH, but $bin is for $machine: the build stage must run on the target platform"
fi
note "$component: $bin ($machine)"

# --- 2. the image's files -------------------------------------------------------------------
rm -rf "$out"
mkdir -p "$out/usr/local/bin"
install -m 0755 "$bin" "$out/usr/local/bin/$binary"

# libs_of FILE...: the shared libraries (resolved paths) that FILEs load, loader included.
libs_of() {
  ldd "$@" 2>/dev/null | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// && $1 !~ /:$/ { print $1 }' | sort -u
}

# foreign_root DEBARCH: Debian's iptables and iproute2 for another architecture, with every
# package they depend on, unpacked (not installed) into a directory whose path it prints. Uses a
# private apt state with this machine's sources, so the system's package lists stay as they are.
foreign_root() {
  local debarch="$1" d="$target_dir/debian-$1"
  local opts=(-o "APT::Architecture=$debarch" -o "APT::Architectures::=$debarch"
    -o "Dir::State::Lists=$d/apt/lists" -o "Dir::Cache=$d/apt/cache" -o "Dir::State::status=$d/apt/status"
    -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
  if [ ! -f "$d/root/.complete" ]; then
    command -v apt-get >/dev/null || fail "the sidecar image for $debarch needs Debian's apt-get (its iptables and iproute2 packages)"
    rm -rf "$d" && mkdir -p "$d/apt/lists/partial" "$d/apt/cache/archives/partial" "$d/debs" "$d/root"
    : >"$d/apt/status"
    apt-get "${opts[@]}" update -qq >&2 || fail "apt-get update for $debarch failed"
    mapfile -t pkgs < <(apt-cache "${opts[@]}" depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances iptables iproute2 | grep -v '^ ' | grep -v '^<' | sort -u)
    (cd "$d/debs" && apt-get "${opts[@]}" download -qq "${pkgs[@]}" >&2) || fail "apt-get download for $debarch failed"
    for deb in "$d"/debs/*.deb; do dpkg-deb -x "$deb" "$d/root"; done
    touch "$d/root/.complete"
    note "sidecar: ${#pkgs[@]} Debian packages for $debarch unpacked into $d/root" >&2
  fi
  echo "$d/root"
}

if [ "$component" = sidecar ]; then
  sys="" # where iptables and ip come from: this system, or another architecture's packages
  if [ -n "$target" ]; then
    case "$arch" in
      aarch64) sys="$(foreign_root arm64)" ;;
      *) fail "the sidecar image for $target: only aarch64 is built" ;;
    esac
    loader="$(find "$sys/lib" "$sys/usr/lib" -maxdepth 2 -name 'ld-linux-*.so.*' | head -n 1)"
    [ -n "$loader" ] || fail "no loader in $sys"
    # The guest's loader lists what a file loads, under qemu with the unpacked packages as root;
    # the paths it prints are the guest's, found under $sys here.
    libs_of() {
      local f
      for f in "$@"; do
        # Static binaries (the sidecar) have no interpreter and load nothing; the loader would
        # try to run them.
        local hdr
        hdr="$(readelf -lh "$f" 2>/dev/null || true)"
        [[ "$hdr" == *"program interpreter"* || "$hdr" == *"Type:"*"DYN ("* ]] || continue
        { "qemu-$arch" -L "$sys" "$loader" --list "$f" 2>/dev/null || true; } |
          awk -v sys="$sys" 'function at(p) { return index(p, sys "/") == 1 ? p : sys p }
            $1 ~ /^\// && $1 !~ /:$/ { print at($1); next } $2 == "=>" && $3 ~ /^\// { print at($3) }'
      done | sort -u
    }
  fi
  sbin="$sys/usr/sbin"
  if [ -z "$sys" ] && { [ ! -x "$sbin/xtables-nft-multi" ] || [ ! -x "$sbin/xtables-legacy-multi" ] || ! command -v ip >/dev/null; }; then
    "$root/scripts/install-test-deps.sh" # installs Debian's iptables and iproute2 when missing (as root)
  fi
  for multi in xtables-nft-multi xtables-legacy-multi; do
    [ -x "$sbin/$multi" ] || fail "$sbin/$multi missing: install Debian's iptables package in the build stage"
  done
  if [ -n "$sys" ]; then ip="$(readlink -f "$sys/bin/ip")"; [ -x "$ip" ] || ip="$sys/sbin/ip"; else ip="$(readlink -f "$(command -v ip)")"; fi
  [ -x "$ip" ] || fail "ip missing: install Debian's iproute2 package in the build stage"
  libxt="$(libs_of "$sbin/xtables-nft-multi" | grep '/libxtables\.so' | head -n 1)"
  [ -n "$libxt" ] || fail "cannot tell where $sbin/xtables-nft-multi finds libxtables"
  libdir="$(dirname "$(readlink -f "$libxt")")" # e.g. /usr/lib/x86_64-linux-gnu
  libdir="${libdir#"$sys"}"
  xtlib="$sys$libdir/xtables"
  [ -d "$xtlib" ] || fail "$xtlib (iptables extensions) missing"

  mkdir -p "$out/usr/sbin" "$out$libdir" "$out/run" "$out/etc" "$out/proc" "$out/dev"
  cp "$sbin/xtables-nft-multi" "$sbin/xtables-legacy-multi" "$out/usr/sbin/"
  cp "$ip" "$out/usr/sbin/ip"
  [ -d "$sys/etc/iproute2" ] && cp -a "$sys/etc/iproute2" "$out/etc/" # names of tables, protocols, scopes
  for fam in iptables ip6tables; do
    for suffix in "" -save -restore; do
      ln -s xtables-nft-multi "$out/usr/sbin/$fam-nft$suffix"
      ln -s xtables-legacy-multi "$out/usr/sbin/$fam-legacy$suffix"
      # The plain names follow Debian's default, nft; the sidecar picks a backend explicitly.
      ln -s "$fam-nft$suffix" "$out/usr/sbin/$fam$suffix"
    done
  done
  cp -a "$xtlib" "$out$libdir/"
  [ -f "$sys/etc/protocols" ] && cp "$sys/etc/protocols" "$out/etc/protocols"

  # Every library the binaries and extensions load, under its soname, in the multiarch dir;
  # the loader where the ELF interpreter path says.
  mapfile -t libs < <(libs_of "$bin" "$sbin/xtables-nft-multi" "$sbin/xtables-legacy-multi" "$ip" "$xtlib"/*.so)
  for lib in "${libs[@]}"; do
    case "$lib" in
      */ld-linux*) guest="${lib#"$sys"}"; mkdir -p "$out$(dirname "$guest")"; cp -L "$lib" "$out$guest" ;;
      *) cp -L "$lib" "$out$libdir/$(basename "$lib")" ;;
    esac
  done
  note "sidecar: $(find "$out" -type f | wc -l) files, $(du -sh "$out" | cut -f1) (binary $(du -h "$bin" | cut -f1)), ${#libs[@]} shared libraries"
else
  # distroless/cc provides glibc and libgcc_s, nothing else.
  allowed='^(linux-vdso\.so\.1|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|libdl\.so\.2|libpthread\.so\.0|librt\.so\.1|ld-linux-x86-64\.so\.2|ld-linux-aarch64\.so\.1)$'
  # From the ELF headers (the needed libraries and the loader), so it works for any architecture.
  while read -r lib; do
    [ -n "$lib" ] || continue
    grep -Eq "$allowed" <<<"$lib" || fail "$binary links $lib, which distroless/cc does not provide"
  done < <(readelf -d "$bin" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p'
           readelf -l "$bin" | sed -n 's/.*Requesting program interpreter: \(.*\)]/\1/p' | xargs -r -n1 basename)
  note "webhook: binary $(du -h "$bin" | cut -f1), links only glibc/libgcc_s (distroless/cc)"
fi

# --- 3. checks ------------------------------------------------------------------------------
check_version() { # OUTPUT
  grep -Fq -- "$VERSION" <<<"$1" ||
    fail "'$binary --version' printed '$1', not the build's version $VERSION (read APISERVER_PROXY_VERSION with option_env! at compile time)"
  note "$component: --version: $1"
}

if [ "$component" = webhook ] || [ -n "$target" ]; then
  check_version "$("${run[@]}" "$bin" --version)"
  if [ "$component" = sidecar ]; then # the image's own tools, from its files, under qemu
    # (iptables-nft itself opens an nf_tables socket even for --version, which qemu-user cannot
    # translate; its -save name loads the same binary and libraries without that.)
    for tool in iptables-nft-save iptables-legacy ip6tables-legacy-save; do
      v="$("qemu-$arch" -L "$out" "$out/usr/sbin/$tool" --version 2>&1)" || fail "$tool ($target) does not run from the image's files: $v"
    done
    v="$("qemu-$arch" -L "$out" "$out/usr/sbin/ip" -V 2>&1)" || fail "ip ($target) does not run from the image's files: $v"
    note "sidecar ($target): from the image's files under qemu: $("qemu-$arch" -L "$out" "$out/usr/sbin/iptables-nft-save" --version), $(tail -1 <<<"$v")"
  fi
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  check_version "$("$bin" --version)"
  cannot "running the sidecar image's files in a chroot needs root"
  exit 0
fi
check_version "$(chroot "$out" /usr/local/bin/$binary --version)"
for tool in iptables-nft iptables-legacy ip6tables-nft ip6tables-legacy iptables-nft-save iptables-legacy-save iptables; do
  v="$(chroot "$out" "/usr/sbin/$tool" --version 2>&1)" || fail "$tool does not run from the image's files: $v"
done
v="$(chroot "$out" /usr/sbin/ip -V 2>&1)" || fail "ip does not run from the image's files: $v"
v="$(tail -1 <<<"$v")" # without libbpf's note that it has no /proc to read its version from
note "sidecar: from the image's files: $(chroot "$out" /usr/sbin/iptables-nft --version), $(chroot "$out" /usr/sbin/iptables-legacy --version), $v"
if ! unshare --net true 2>/dev/null; then
  cannot "writing rules from the image's files needs network namespaces"
  exit 0
fi

# The capabilities deploy/ gives the sidecar (its DaemonSet, rendered), and nothing more, for
# everything below; plus SYS_CHROOT, only to enter the image's files (it grants nothing on the
# network). Mounts are made before, as root.
if [ ! -f "$root/deploy/kustomization.yaml" ]; then
  cannot "the sidecar's capabilities in deploy/ (no deploy/ here)"
  exit 0
fi
venv="$("$root/scripts/ci-venv.sh")"
caps="$("$venv/kubectl" kustomize "$root/deploy" | "$venv/python" -c '
import sys, yaml
(ds,) = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "DaemonSet"]
pod = ds["spec"]["template"]["spec"]
sets = {tuple(sorted(c["securityContext"]["capabilities"]["add"]))
        for c in pod["initContainers"] + pod["containers"] if "apiserver-proxy-sidecar" in c["image"]}
assert len(sets) == 1, sets
print(",".join("+" + c.lower() for c in sets.pop()))
')" || fail "cannot read the sidecar's capabilities from deploy/"
note "sidecar: the capabilities deploy/ gives it: $caps"
with_caps() { # CAPS: a command prefix running as root with only CAPS (and SYS_CHROOT)
  echo "setpriv --bounding-set=-all,$1,+sys_chroot --inh-caps=-all,$1,+sys_chroot --ambient-caps=-all,$1,+sys_chroot --"
}
priv="$(with_caps "$caps")"

for backend in nft legacy; do
  # The chroot gets /proc and /dev, as a container has them (iptables-legacy-save lists tables
  # from /proc, the sidecar spawns with /dev/null), in a private mount namespace that takes the
  # mounts with it.
  got="$(unshare --net --mount --propagation private -- sh -ec "
    mount -t proc proc '$out/proc'
    mount --rbind /dev '$out/dev'
    mount -t tmpfs -o size=1m tmpfs '$out/run'
    $priv chroot '$out' /usr/sbin/ip link set lo up
    $priv chroot '$out' /usr/sbin/ip addr add 10.96.0.2/32 dev lo scope global
    $priv chroot '$out' /usr/sbin/ip -o addr show dev lo
    $priv chroot '$out' /usr/sbin/iptables-$backend -w 5 -t raw -I PREROUTING -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK
    $priv chroot '$out' /usr/sbin/iptables-$backend -w 5 -t filter -I INPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j ACCEPT
    $priv chroot '$out' /usr/sbin/ip6tables-$backend -w 5 -t raw -I OUTPUT -s fd00::2/128 -p tcp -m tcp --sport 443 -j NOTRACK
    $priv chroot '$out' /usr/sbin/iptables-$backend-save
    $priv chroot '$out' /usr/sbin/ip6tables-$backend-save
  " 2>&1)" || fail "iptables-$backend or ip from the image's files cannot work with only $caps: $got"
  n="$(grep -cE -- '-j (NOTRACK|CT --notrack|ACCEPT)' <<<"$got" || true)"
  [ "$n" = 3 ] || fail "iptables-$backend-save from the image's files shows $n of 3 rules: $got"
  grep -q 'inet 10.96.0.2/32 scope global' <<<"$got" || fail "ip addr from the image's files does not show the address: $got"
  note "sidecar: with only $caps, ip and iptables-$backend from the image's files put an address and 3 rules in place and read them back, in a throwaway network namespace"
done

# NET_RAW is needed: iptables-legacy opens a raw socket.
if got="$(unshare --net --mount --propagation private -- sh -ec "
    mount -t proc proc '$out/proc'
    mount -t tmpfs -o size=1m tmpfs '$out/run'
    $(with_caps +net_admin) chroot '$out' /usr/sbin/iptables-legacy -w 5 -t raw -S" 2>&1)"; then
  fail "iptables-legacy works with NET_ADMIN alone: NET_RAW is not needed, drop it from deploy/"
fi
note "sidecar: iptables-legacy fails with NET_ADMIN alone ($(tail -1 <<<"$got")): NET_RAW is needed"

# The sidecar itself from the image's files, once per backend, as the DaemonSet's init container
# runs it: only deploy/'s capabilities, read-only root filesystem, an emptyDir on /run, the host's
# /run/xtables.lock mounted in, its dummy link (on lo where this kernel has no dummy driver). The
# link, the address (as the image's ip shows it) and all five rules must be in place, exit 0.
if unshare --net -- ip link add probe type dummy 2>/dev/null; then
  dev=apiserver-proxy
else
  dev=lo
  note "NOTE: this kernel has no dummy link driver: the sidecar puts the address on lo; creating the dummy link is not checked here"
fi
touch /run/xtables.lock # the host's file (hostPath FileOrCreate)
for backend in nft legacy; do
  got="$(unshare --net --mount --propagation private -- sh -ec "
    mount --bind '$out' '$out'
    mount -o remount,bind,ro '$out'
    mount -t proc proc '$out/proc'
    mount --rbind /dev '$out/dev'
    mount -t tmpfs -o size=1m tmpfs '$out/run'
    touch '$out/run/xtables.lock'
    mount --bind /run/xtables.lock '$out/run/xtables.lock'
    ip link set lo up
    $priv chroot '$out' /usr/local/bin/$binary --ip-address=10.96.0.2 --interface=$dev --setup-iptables \\
      --port=443 --daemon=false --iptables-backend=$backend
    $priv chroot '$out' /usr/sbin/ip -o addr show dev $dev | grep -q 'inet 10.96.0.2/32 scope global' || { echo 'address missing'; exit 1; }
    $priv chroot '$out' /usr/sbin/iptables-$backend-save
  " 2>&1)" || fail "the sidecar from the image's files failed with only $caps and --iptables-backend=$backend: $got"
  n="$(grep -cE -- '^-A (PREROUTING|OUTPUT|INPUT) .*10\.96\.0\.2/32 .*(NOTRACK|CT --notrack|ACCEPT)' <<<"$got" || true)"
  [ "$n" = 5 ] || fail "after the sidecar (--iptables-backend=$backend), iptables-$backend-save shows $n of 5 rules: $got"
  note "sidecar: the sidecar from the image's files (only $caps, read-only, --daemon=false, --interface=$dev, --iptables-backend=$backend) put the address and 5 rules in place"
done
