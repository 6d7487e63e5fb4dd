#!/usr/bin/env bash
# SPDX-FileCopyrightText: 2026 apiserver-proxy contributors
# SPDX-License-Identifier: Apache-2.0
#
# Runs each cargo-fuzz target of the pod webhook (fuzz/) for a fixed time, starting from the
# committed seed corpus (fuzz/corpus/<target>, read only: new inputs go to a scratch directory),
# and fails on any crash, panic, timeout or out-of-memory. Prints per target the executions, the
# inputs in the final corpus and the coverage reached.
#
# Usage: scripts/fuzz.sh [SECONDS]   (default 60 per target; needs nightly and cargo-fuzz:
#        rustup toolchain install nightly && cargo install cargo-fuzz --locked)
#
# Built without a sanitizer (-s none): the webhook forbids unsafe code, so AddressSanitizer
# would only slow the run; panics, overflow checks and debug assertions are what trip.
# A crash leaves its input in fuzz/artifacts/<target>/; add it to fuzz/corpus/<target>/ so the
# normal tests (crates/pod-webhook/tests/fuzz_corpus.rs) replay it from then on.
set -euo pipefail
cd "$(dirname "$0")/.."

SECONDS_PER_TARGET=${1:-60}
# libFuzzer's -seed: 0 picks a random one (new ground every run); CI passes a fixed seed so its
# verdict does not depend on luck, while local runs keep exploring.
FUZZ_SEED=${FUZZ_SEED:-0}
TARGETS=${FUZZ_TARGETS:-"review flags"}
case $SECONDS_PER_TARGET in '' | *[!0-9]*) echo "usage: $0 [SECONDS]" >&2; exit 2 ;; esac

cargo +nightly fuzz --version >/dev/null 2>&1 ||
    { echo "cargo-fuzz is missing: cargo install cargo-fuzz --locked" >&2; exit 1; }
# fuzz/Cargo.lock is committed; refuse to run with a stale one.
cargo +nightly fetch --locked --manifest-path fuzz/Cargo.toml >/dev/null

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
summary=()
for target in $TARGETS; do
    seeds=fuzz/corpus/$target
    mkdir -p "$work/$target" "fuzz/artifacts/$target"
    dict=()
    [ -f "fuzz/$target.dict" ] && dict=("-dict=fuzz/$target.dict")
    echo "==> fuzzing $target for ${SECONDS_PER_TARGET}s ($(find "$seeds" -type f | wc -l) seeds)"
    status=0
    cargo +nightly fuzz run -s none "$target" "$work/$target" "$seeds" -- \
        -max_total_time="$SECONDS_PER_TARGET" -seed="$FUZZ_SEED" -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
        -print_final_stats=1 -artifact_prefix="fuzz/artifacts/$target/" "${dict[@]}" \
        >"$work/$target.log" 2>&1 || status=$?
    grep -E '^#[0-9]+[[:space:]]+(INITED|DONE)|^Done|^stat::' "$work/$target.log" || true
    runs=$(awk '/^stat::number_of_executed_units/ {print $NF}' "$work/$target.log" | tail -1)
    corpus=$(grep -oE 'corp: [0-9]+' "$work/$target.log" | tail -1 | awk '{print $2}')
    seeds_n=$(find "$seeds" -type f | wc -l)
    cov=$(grep -oE 'cov: [0-9]+' "$work/$target.log" | tail -1 | awk '{print $2}')
    if [ "$status" != 0 ]; then
        echo "FAIL: $target crashed (exit $status); input in fuzz/artifacts/$target/:" >&2
        ls -l "fuzz/artifacts/$target" >&2
        tail -40 "$work/$target.log" >&2
        exit 1
    fi
    summary+=("$target: ${runs:-?} inputs executed in ${SECONDS_PER_TARGET}s, final corpus ${corpus:-?} inputs (from $seeds_n seeds), coverage ${cov:-?} edges, 0 crashes")
done
echo
echo "fuzz summary:"
printf '  %s\n' "${summary[@]}"
