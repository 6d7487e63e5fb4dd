#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Proves that the capabilities deploy/ gives the sidecar (and nothing more) suffice for what it
# does, with both iptables backends, and that NET_RAW is really needed: in a throwaway network
# namespace, as root restricted to exactly those capabilities, it creates the dummy link, adds
# the address and writes and reads a NOTRACK rule with iptables-nft and iptables-legacy. Then it
# shows that NET_ADMIN alone fails for iptables-legacy. Needs root (CI runs as root); fails,
# never skips, when it cannot run.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
bin="$("$root/scripts/ci-venv.sh")"

if [ "$(id -u)" -ne 0 ]; then
  echo "check-daemonset-caps: needs root (network namespaces, capabilities)" >&2
  exit 1
fi
"$root/scripts/install-test-deps.sh"

caps="$("$bin/kubectl" kustomize "$root/deploy" | "$bin/python" -c '
import sys, yaml
(ds,) = [d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "DaemonSet"]
pod = ds["spec"]["template"]["spec"]
sets = {tuple(sorted(c["securityContext"]["capabilities"]["add"]))
        for c in pod["initContainers"] + pod["containers"] if "apiserver-proxy-sidecar" in c["image"]}
assert len(sets) == 1, sets
print(",".join("+" + c.lower() for c in sets.pop()))
')"
echo "check-daemonset-caps: the sidecar's capabilities in deploy/: $caps"

# run_with CAPS CMD...: in a new network namespace, as root with only CAPS.
run_with() {
  local c="$1"; shift
  unshare --net -- setpriv --bounding-set=-all,"$c" --inh-caps=-all,"$c" --ambient-caps=-all,"$c" -- "$@"
}

# The dummy link needs the kernel's dummy driver; some kernels (sandboxes) have none, and then
# the address goes on lo (the original default) and the link part is reported as not checked.
if unshare --net -- ip link add probe type dummy 2>/dev/null; then
  link="ip link add apiserver-proxy type dummy; ip link set apiserver-proxy up"; dev=apiserver-proxy
else
  echo "check-daemonset-caps: NOTE: this kernel has no dummy link driver; using lo, dummy link creation not checked"
  link="ip link set lo up"; dev=lo
fi

ok=0 bad=0
for backend in nft legacy; do
  if out="$(run_with "$caps" sh -ec "
      $link
      ip addr add 10.96.0.2/32 dev $dev scope global
      iptables-$backend -w 5 -t raw -I OUTPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j NOTRACK
      iptables-$backend -w 5 -t filter -I INPUT -d 10.96.0.2/32 -p tcp -m tcp --dport 443 -j ACCEPT
      ip6tables-$backend -w 5 -t raw -I OUTPUT -d fd00::2/128 -p tcp -m tcp --dport 443 -j NOTRACK
      iptables-$backend-save | grep -c -- '-j NOTRACK\|-j CT --notrack'
      ip -4 addr show dev $dev | grep -c 'inet 10.96.0.2/32 scope global'
      " 2>&1)"; then
    echo "ok: $backend backend works with only $caps"; ok=$((ok + 1))
  else
    echo "FAIL: $backend backend with only $caps:"; echo "$out"; bad=$((bad + 1))
  fi
done

if out="$(run_with +net_admin iptables-legacy -w 5 -t raw -S 2>&1)"; then
  echo "FAIL: iptables-legacy works with NET_ADMIN alone: NET_RAW is not needed, drop it from deploy/"; bad=$((bad + 1))
else
  echo "ok: iptables-legacy fails with NET_ADMIN alone ($(head -1 <<<"$out")): NET_RAW is needed"; ok=$((ok + 1))
fi
echo "check-daemonset-caps: $ok passed, $bad failed"
[ "$bad" -eq 0 ]
