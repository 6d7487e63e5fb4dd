#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Load test of the pod webhook next to a minimal rustls + hyper server that answers a fixed body
# (crates/pod-webhook/examples/fixed-body-server.rs: the cost of TLS and HTTP alone).
#
# wrk (keep-alive HTTP/1.1 over TLS) posts testdata/admission.json (small pod) and
# testdata/admission-large.json (20 containers, ~80 KB) at concurrency 16 and 64. The server is
# pinned to CPU $SERVER_CPU and wrk to CPU $CLIENT_CPU. Reports requests/s, p50/p99 latency, peak
# RSS, server CPU time per request (utime+stime from /proc, honest even when wrk saturates its
# core), then the start-to-ready time of the webhook. Everything runs on 127.0.0.1 only.
# Each of $ROUNDS rounds measures both servers; the ratio of their CPU time per request is
# reported as the median over the rounds.
#
# Usage: bench/webhook-load.sh
#   (defaults: DURATION=10s CONNECTIONS="16 64" BODIES="small large" ROUNDS=3)
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-"16 64"}
BODIES=${BODIES:-"small large"}
ROUNDS=${ROUNDS:-3}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
PORT=${PORT:-19443}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-target}

if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "installing wrk" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2 ||
            { apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >&2; }
    else
        echo "wrk is missing: apt-get install -y wrk" >&2; exit 1
    fi
fi
command -v taskset >/dev/null || { echo "taskset is missing: apt-get install -y util-linux" >&2; exit 1; }

cargo build --release --locked -p apiserver-proxy-pod-webhook \
    --bin apiserver-proxy-pod-webhook --example fixed-body-server --example ready-time >&2
WEBHOOK=$CARGO_TARGET_DIR/release/apiserver-proxy-pod-webhook
FIXED=$CARGO_TARGET_DIR/release/examples/fixed-body-server
READY=$CARGO_TARGET_DIR/release/examples/ready-time

work=$(mktemp -d)
server_pid=
cleanup() {
    if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
    rm -rf "$work"
}
trap cleanup EXIT

cat >"$work/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY_FILE"), "rb"))
wrk.body = f:read("*a")
f:close()
LUA

clk_tck=$(getconf CLK_TCK)
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
peak_rss_kib() { awk '/^VmHWM:/ {print $2}' "/proc/$1/status"; }

start_server() {
    case $1 in
        webhook) taskset -c "$SERVER_CPU" "$WEBHOOK" --apiserver-fqdn=foo.bar. --cert-dir testdata \
                     --host=127.0.0.1 --port="$PORT" 2>"$work/server.log" & ;;
        fixed) taskset -c "$SERVER_CPU" "$FIXED" testdata "$PORT" 2>"$work/server.log" & ;;
    esac
    server_pid=$!
    for _ in $(seq 200); do
        if curl -sk -o /dev/null "https://127.0.0.1:$PORT/readyz"; then return; fi
        sleep 0.05
    done
    echo "$1 did not come up" >&2; cat "$work/server.log" >&2; exit 1
}

stop_server() { kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=; }

# wrk latency to milliseconds.
to_ms() { awk -v v="$1" 'BEGIN { n = v + 0; if (v ~ /us$/) n /= 1000; else if (v ~ /ms$/) n += 0; else if (v ~ /s$/) n *= 1000; printf "%.2f", n }'; }

printf '| round | server | pod | connections | requests/s | p50 ms | p99 ms | peak RSS MiB | server CPU µs/request |\n'
printf '|---|---|---|---|---|---|---|---|---|\n'
declare -A cpu_per_req
for round in $(seq "$ROUNDS"); do
    for body in $BODIES; do
        case $body in small) file=testdata/admission.json ;; large) file=testdata/admission-large.json ;; esac
        for server in fixed webhook; do
            start_server "$server"
            # Warm up: connections, TLS sessions, allocator.
            BODY_FILE=$file taskset -c "$CLIENT_CPU" wrk -t1 -c16 -d1s -s "$work/post.lua" \
                "https://127.0.0.1:$PORT/webhook/pod-apiserver-env?timeout=2s" >/dev/null
            for c in $CONNECTIONS; do
                before=$(cpu_ticks "$server_pid")
                BODY_FILE=$file taskset -c "$CLIENT_CPU" wrk -t2 -c"$c" -d"$DURATION" --latency -s "$work/post.lua" \
                    "https://127.0.0.1:$PORT/webhook/pod-apiserver-env?timeout=2s" >"$work/wrk.txt"
                after=$(cpu_ticks "$server_pid")
                if grep -q "Non-2xx" "$work/wrk.txt"; then
                    echo "$server answered errors:" >&2; cat "$work/wrk.txt" >&2; exit 1
                fi
                requests=$(awk '/requests in/ {print $1}' "$work/wrk.txt")
                rps=$(awk '/^Requests\/sec:/ {printf "%.0f", $2}' "$work/wrk.txt")
                p50=$(to_ms "$(awk '$1 == "50%" {print $2}' "$work/wrk.txt")")
                p99=$(to_ms "$(awk '$1 == "99%" {print $2}' "$work/wrk.txt")")
                rss=$(awk -v k="$(peak_rss_kib "$server_pid")" 'BEGIN {printf "%.1f", k / 1024}')
                cpu=$(awk -v t=$((after - before)) -v hz="$clk_tck" -v n="$requests" 'BEGIN {printf "%.1f", t / hz / n * 1e6}')
                cpu_per_req[$round/$server/$body/$c]=$cpu
                printf '| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' \
                    "$round" "$server" "$body" "$c" "$rps" "$p50" "$p99" "$rss" "$cpu"
            done
            stop_server
        done
    done
done

# The ratio of each round pairs runs minutes apart, so a slow drift of the machine cancels out;
# the median over rounds discards a round disturbed by other load.
echo
printf '| pod | connections | webhook CPU / fixed-body CPU per request: median (min–max) over %s rounds |\n|---|---|---|\n' "$ROUNDS"
for body in $BODIES; do
    for c in $CONNECTIONS; do
        for round in $(seq "$ROUNDS"); do
            awk -v w="${cpu_per_req[$round/webhook/$body/$c]}" -v f="${cpu_per_req[$round/fixed/$body/$c]}" \
                'BEGIN {printf "%.2f\n", w / f}'
        done | sort -n | awk -v b="$body" -v c="$c" '
            { r[NR] = $1 }
            END {
                m = NR % 2 ? r[(NR + 1) / 2] : (r[NR / 2] + r[NR / 2 + 1]) / 2
                printf "| %s | %s | %.2f× (%.2f–%.2f) |\n", b, c, m, r[1], r[NR]
            }'
    done
done

echo
"$READY" "$WEBHOOK" testdata "$PORT" 20
