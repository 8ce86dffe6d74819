#!/usr/bin/env bash
# Builds the embedded benchmark once (release) and runs it: e2e for shareworker, apalis and a bare
# tokio loop at concurrency 1 and 256, then the head-of-line workload; prints markdown tables.
#
#   benches/run.sh                      # the full run (1M jobs per e2e run, 5 runs each, median)
#   JOBS=100000 REPEAT=1 benches/run.sh # quicker
#
# Settings (environment):
#   JOBS=1000000        jobs per e2e run
#   CONCURRENCY="1 256" e2e concurrency levels
#   IMPLS="shareworker apalis tokio"
#   REPEAT=5            runs per e2e configuration, round after round of all of them; the row
#                       with the median end-to-end rate is shown
#   HOL_JOBS=20000 HOL_PARTITIONS=4 HOL_CONCURRENCY=200
#   MAX_LOAD=1.5        wait before each run while the 1-minute load average is above this...
#   MAX_WAIT=600        ...for at most this many seconds in total (then run anyway, and say so)
#   SKIP_HOL=1          skip the head-of-line run
#   BASE_BIN=path       also run this (earlier) build of the bench binary as the impl `base`
#                       (shareworker at a baseline commit), side by side: IMPLS="base shareworker apalis"
#
# Each configuration runs in its own process, so peak RSS (VmHWM) belongs to that run alone.
# The bench package is not a member of the main workspace; its build cache is target/bench-embedded.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/bench-embedded}"
JOBS="${JOBS:-1000000}"
CONCURRENCY="${CONCURRENCY:-1 256}"
IMPLS="${IMPLS:-shareworker apalis tokio}"
REPEAT="${REPEAT:-5}"
HOL_JOBS="${HOL_JOBS:-20000}"
HOL_PARTITIONS="${HOL_PARTITIONS:-4}"
HOL_CONCURRENCY="${HOL_CONCURRENCY:-200}"
MAX_LOAD="${MAX_LOAD:-1.5}"
MAX_WAIT="${MAX_WAIT:-600}"

log() { echo "$*" >&2; }

log "building (release) in $CARGO_TARGET_DIR ..."
cargo build --release --manifest-path "$here/embedded/Cargo.toml" >&2
bin="$CARGO_TARGET_DIR/release/shareworker-bench-embedded"

waited=0
loads=()
# Waits while the machine is busy (others compile here too), up to MAX_WAIT seconds in total.
wait_quiet() {
    local load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l <= m) }'; then break; fi
        if (( waited >= MAX_WAIT )); then
            log "load $load is above $MAX_LOAD but the wait budget (${MAX_WAIT}s) is spent; running anyway"
            break
        fi
        log "load $load > $MAX_LOAD; waiting ..."
        sleep 10
        waited=$((waited + 10))
    done
    loads+=("$load")
}

notes=()
rows=()
# Round after round of every configuration (not all runs of one, then the next): this shared
# machine drifts over minutes, and a drift must hit every configuration alike.
declare -A runs=()
for ((r = 1; r <= REPEAT; r++)); do
    for c in $CONCURRENCY; do
        for impl in $IMPLS; do
            wait_quiet
            log "e2e --impl $impl --concurrency $c --jobs $JOBS (run $r/$REPEAT, load ${loads[-1]})"
            start=$(date +%s)
            if [[ "$impl" == base ]]; then
                row=$("${BASE_BIN:?BASE_BIN names the baseline binary}" e2e --jobs "$JOBS" --concurrency "$c" --impl shareworker \
                    | sed 's/^| shareworker |/| shareworker (base) |/')
            else
                row=$("$bin" e2e --jobs "$JOBS" --concurrency "$c" --impl "$impl")
            fi
            secs=$(( $(date +%s) - start ))
            if (( c == 1 && secs > 180 )); then
                notes+=("$impl at concurrency 1 took ${secs}s (over 3 minutes); its result is used anyway")
            fi
            runs["$c $impl"]+="$row"$'\n'
        done
    done
done
for c in $CONCURRENCY; do
    for impl in $IMPLS; do
        # The row whose end-to-end rate (7th |-separated field) is the median.
        median=$(printf '%s' "${runs["$c $impl"]}" \
            | awk -F'|' 'NF > 1 { r = $7; gsub(/[ ,]/, "", r); print r "\t" $0 }' \
            | sort -n -k1,1 | awk -v n="$REPEAT" 'NR == int((n + 1) / 2) { sub(/^[^\t]*\t/, ""); print }')
        rows+=("$median")
    done
done

echo
echo "### End to end: $JOBS jobs enqueued first, then a no-op handler until all are settled (median of $REPEAT)"
echo
echo "| impl | concurrency | jobs | enqueue (s) | dispatch (s) | end-to-end (jobs/s) | dispatch-only (jobs/s) | peak RSS (MiB) |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|"
printf '%s\n' "${rows[@]}"

if [[ -z "${SKIP_HOL:-}" ]]; then
    wait_quiet
    log "hol --jobs $HOL_JOBS --partitions $HOL_PARTITIONS --concurrency $HOL_CONCURRENCY (load ${loads[-1]})"
    echo
    echo "### Head of line: lognormal handler times (mean 50 ms, sigma 0.5) with 5% of jobs taking 2 s"
    echo
    "$bin" hol --jobs "$HOL_JOBS" --partitions "$HOL_PARTITIONS" --concurrency "$HOL_CONCURRENCY" --header
fi

echo
lo=$(printf '%s\n' "${loads[@]}" | sort -n | head -1)
hi=$(printf '%s\n' "${loads[@]}" | sort -n | tail -1)
echo "1-minute load average before the runs: ${lo} to ${hi} (waited ${waited}s for a quieter machine; nproc $(nproc))."
for n in "${notes[@]+"${notes[@]}"}"; do
    echo "Note: $n"
done
