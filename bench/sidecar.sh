#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Measures the sidecar's footprint and reaction times against the real kernel, in throwaway
# network namespaces (as root). Prints one line per figure; docs/benchmarks.md quotes them.
#
#   bench/sidecar.sh            # builds the release binary first, as the image does
#   RUNS=50 bench/sidecar.sh    # more samples for the one-shot and shutdown timings
#   SIDECAR_BIN=path bench/sidecar.sh   # measures that binary instead (another commit's, say)
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-20}
IP=10.96.0.2
# cargo reports on stderr, errors included
BIN=${SIDECAR_BIN:-$(scripts/build-release.sh apiserver-proxy-sidecar)}
command -v strace >/dev/null || { echo "bench needs strace" >&2; exit 1; }
# An older build (SIDECAR_BIN) without the native mode is measured without its rows.
native=false
"$BIN" --help 2>&1 | grep -q -- --firewall && native=true

work=$(mktemp -d)
namespaces=()
cleanup() {
  jobs -p | xargs -r kill 2>/dev/null || true
  for ns in "${namespaces[@]}"; do ip netns delete "$ns" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

# Sets $ns to a new namespace (no subshell, so the list for the exit trap stays whole).
new_ns() {
  ns="apxb-$$-${#namespaces[@]}"
  ip netns add "$ns"
  namespaces+=("$ns")
}
now_ns() { date +%s%N; }
median() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
# rules_in_place NS [SAVE]: all five rules of $IP are listed by SAVE (iptables-nft-save) in NS.
rules_in_place() { [ "$(ip netns exec "$1" "${2:-iptables-nft-save}" | grep -c -- "$IP")" -ge 5 ]; }

# --- steady state: RSS, spawns and CPU per tick (100 ms interval to get many ticks) ---------
ticks=50
clk=$(getconf CLK_TCK)
stat() { awk '{ print $14 + $15, $16 + $17 }' /proc/$pid/stat; }
table_in_place() { ip netns exec "$1" nft list table inet "apiserver-proxy-$IP" >/dev/null 2>&1; }
# steady LABEL CHECK ARGS...: runs the sidecar with ARGS in the namespace $ns until CHECK says
# its rules are in place, then measures 50 ticks, and counts what the next 50 run (strace).
steady() {
  local label="$1" check="$2"
  shift 2
  ip netns exec "$ns" "$BIN" --ip-address=$IP --setup-iptables --sync-interval=100ms \
    --xtables-lock="$work/lock" "$@" 2>"$work/steady.log" &
  pid=$!
  for _ in $(seq 100); do "$check" "$ns" && break; sleep 0.05; done
  sleep 1
  read -r own0 children0 < <(stat)
  sleep $((ticks / 10))
  read -r own1 children1 < <(stat)
  rss_kib=$(awk '/^VmRSS/ { print $2 }' /proc/$pid/status)
  # Process creations by any of its threads, seen from the sidecar's side: following the
  # children (strace -f) can leave a vfork child stopped when strace detaches.
  strace -qq -e trace=clone,clone3,fork,vfork -o "$work/spawn.trace" \
    $(for task in /proc/$pid/task/*; do printf -- '-p %s ' "${task##*/}"; done) &
  tracer=$!
  sleep $((ticks / 10))
  kill -INT $tracer; wait $tracer 2>/dev/null || true
  spawns=$(grep -v CLONE_THREAD "$work/spawn.trace" | grep -cE '= [0-9]+$' || true)
  kill -TERM $pid; wait $pid || true
  awk -v l="$label" -v r="$rss_kib" -v s="$spawns" -v a=$((own1 - own0)) -v c=$((children1 - children0)) \
    -v t=$ticks -v k="$clk" 'BEGIN {
    printf "steady state, %s: RSS %d KiB; spawns per tick %.2f (%d over ~%d ticks, strace); CPU per tick: sidecar %.2f ms, its children %.2f ms\n",
      l, r, s / t, s, t, a * 1000 / k / t, c * 1000 / k / t }'
}
rules_in_place_legacy() { rules_in_place "$1" iptables-legacy-save; }
new_ns
steady "iptables-nft" rules_in_place --iptables-backend=nft
new_ns
steady "iptables-legacy" rules_in_place_legacy --iptables-backend=legacy
# A large kube-proxy beside the rules: 60,000 nat rules in its shape (a DNAT per service).
new_ns
awk 'BEGIN { print "*nat"; print ":KUBE-SERVICES - [0:0]"
  for (i = 0; i < 60000; i++) { a = int(i / 65536) % 256; b = int(i / 256) % 256; c = i % 256
    printf "-A KUBE-SERVICES -d 10.%d.%d.%d/32 -p tcp -m tcp --dport 80 -m comment --comment \"default/svc-%d:http cluster IP\" -j DNAT --to-destination 10.200.%d.%d:8080\n", a, b, c, i, b, c }
  print "COMMIT" }' >"$work/nat.rules"
ip netns exec "$ns" iptables-legacy-restore <"$work/nat.rules"
steady "iptables-legacy, 60,000 nat rules beside" rules_in_place_legacy --iptables-backend=legacy
new_ns
ip netns exec "$ns" iptables-nft-restore <"$work/nat.rules"
steady "iptables-nft, 60,000 nat rules beside" rules_in_place --iptables-backend=nft
if $native; then
  new_ns
  steady "native nftables" table_in_place --firewall=nftables
fi

# --- a node with many addresses: 5,000 Service IPs on kube-ipvs0, as kube-proxy's IPVS mode --
# keeps them; every sync dumps them all (100 ms interval, address only).
new_ns
ip netns exec "$ns" ip link add kube-ipvs0 type bridge
awk 'BEGIN { for (i = 0; i < 5000; i++) printf "addr add 10.97.%d.%d/32 dev kube-ipvs0\n", i / 250, i % 250 + 1 }' \
  >"$work/ipvs.batch"
ip netns exec "$ns" ip -batch "$work/ipvs.batch"
ip netns exec "$ns" "$BIN" --ip-address=$IP --sync-interval=100ms --xtables-lock="$work/lock" \
  2>"$work/ipvs.log" &
pid=$!
for _ in $(seq 100); do ip netns exec "$ns" ip -o addr show dev lo | grep -q "$IP" && break; sleep 0.05; done
sleep 1
read -r own0 _ < <(stat)
sleep $((ticks / 10))
read -r own1 _ < <(stat)
rss_kib=$(awk '/^VmRSS/ { print $2 }' /proc/$pid/status)
kill -TERM $pid; wait $pid || true
echo "with 5000 other addresses on the node: RSS $rss_kib KiB, CPU per tick $(awk -v a=$((own1 - own0)) -v t=$ticks -v k="$clk" 'BEGIN { printf "%.2f", a * 1000 / k / t }') ms"

# --- self-heal latency at the default 1m interval, from the kernel's own timestamps ----------
new_ns
ip netns exec "$ns" "$BIN" --ip-address=$IP --xtables-lock="$work/lock" 2>"$work/heal.log" &
pid=$!
for _ in $(seq 100); do ip netns exec "$ns" ip -o addr show dev lo | grep -q "$IP" && break; sleep 0.05; done
ip netns exec "$ns" ip -ts monitor address >"$work/monitor" &
monitor=$!
sleep 0.3
for _ in $(seq "$RUNS"); do
  ip netns exec "$ns" ip addr del $IP/32 dev lo
  sleep 0.05
done
sleep 0.3
kill $monitor; wait $monitor 2>/dev/null || true
kill -TERM $pid; wait $pid || true
# Pairs of "Deleted ... 10.96.0.2" then the re-add; ip -ts prints [YYYY-MM-DDTHH:MM:SS.micro].
awk -v ip="$IP" '
  function t(line) { match(line, /T[0-9:.]+/); split(substr(line, RSTART + 1, RLENGTH - 1), p, ":"); return p[1] * 3600 + p[2] * 60 + p[3] }
  index($0, ip) && /Deleted/ { del = t($0); next }
  index($0, ip) && del { print (t($0) - del) * 1e6; del = 0 }
' "$work/monitor" | median | awk -v n="$RUNS" '{ printf "self-heal latency after ip addr del (1m interval): median %.0f us over %d deletions\n", $1, n }'

# --- one-shot --daemon=false, nothing in place yet --------------------------------------------
# Timed inside the namespace (bash's EPOCHREALTIME), so ip netns exec's own set-up is not counted;
# between runs the address and rules are removed again, outside the timing.
new_ns
modes="address iptables"
$native && modes="$modes nftables"
for mode in $modes; do
  extra=""
  [ $mode = iptables ] && extra="--setup-iptables --iptables-backend=nft"
  [ $mode = nftables ] && extra="--setup-iptables --firewall=nftables"
  ip netns exec "$ns" bash -c '
    for _ in $(seq '"$RUNS"'); do
      ip addr flush dev lo scope global
      iptables-nft -t raw -F; iptables-nft -t filter -F
      nft delete table inet apiserver-proxy-'"$IP"' 2>/dev/null || true
      start=$EPOCHREALTIME
      '"$BIN"' --ip-address='"$IP"' --daemon=false --xtables-lock='"$work"'/lock '"$extra"' 2>/dev/null
      end=$EPOCHREALTIME
      echo $(( (${end/./} - ${start/./}) ))
    done' | median | awk -v m=$mode -v n="$RUNS" '{
      l = (m == "iptables") ? "address + 5 rules" : (m == "nftables") ? "address + native nftables table" : "address only"
      printf "one-shot --daemon=false wall time (%s): median %.1f ms over %d runs\n", l, $1 / 1000, n }'
done

# --- SIGTERM to exit with --cleanup -----------------------------------------------------------
samples=()
for _ in $(seq "$RUNS"); do
  new_ns
  ip netns exec "$ns" "$BIN" --ip-address=$IP --setup-iptables --iptables-backend=nft --cleanup \
    --xtables-lock="$work/lock" 2>/dev/null &
  pid=$!
  for _ in $(seq 100); do rules_in_place "$ns" && break; sleep 0.02; done
  start=$(now_ns)
  kill -TERM $pid; wait $pid || true
  samples+=($(( ($(now_ns) - start) / 1000 )))
  left=$(ip netns exec "$ns" iptables-nft-save | grep -c -- "$IP" || true)
  [ "$left" -eq 0 ] || { echo "cleanup left $left rules" >&2; exit 1; }
  ip netns delete "$ns"
done
printf '%s\n' "${samples[@]}" | median | awk -v n="$RUNS" '{ printf "SIGTERM to exit with --cleanup (5 rules + address): median %.1f ms over %d runs\n", $1 / 1000, n }'
