#!/usr/bin/env bash
# The Kafka benchmark of BENCHMARKS.md ("Kafka"): consume a pre-filled topic with shareworker, with
# Kafka's own Java share consumer (ShareConsumerPerformance) and with a plain consumer group
# (ConsumerPerformance, the broker's ceiling); then the head-of-line workload on Kafka. Prints
# markdown tables on stdout, progress on stderr.
#
#   benches/run-kafka.sh                           # everything (a broker of its own on port 29092)
#   REPEAT=1 SW_CONFIGS="256:8192" SKIP_HOL=1 benches/run-kafka.sh   # quicker
#
# Settings (environment):
#   PORT=29092 DIR=target/kafka/bench-29092    the broker (scripts/kafka.sh start/stop); a broker
#                                              already running there is used and left running
#   KAFKA_HEAP_OPTS="-Xmx1g -Xms1g"            broker heap
#   TOPIC=bench-2m PARTITIONS=8 RECORDS=2000000 RECORD_SIZE=100
#                                              created and filled once with producer-perf; reused
#                                              when it already holds RECORDS records
#   IMPLS="shareworker java-share java-plain"
#   SW_CONFIGS="32:auto 256:8192"              shareworker concurrency:prefetch pairs to run; the
#                                              first, 32:auto, is the library's defaults (the headline)
#   SW_MAIN=32:auto                            the pair compared with the others in the summary
#   BASE_BIN=path BASE_CONFIGS="32:16"         also run another build of the bench binary (say a
#                                              release build of an older commit) as "shareworker
#                                              (base)", with these pairs (32:16: the defaults
#                                              before prefetch = "auto"), and in the head-of-line run
#   JAVA_OPTS="-Xmx512M -XX:+UseG1GC ..."      JVM flags of the Java consumers (default: what
#                                              kafka-*-perf-test.sh and kafka-run-class.sh use)
#   JAVA_SHARE_PROPS=""                        extra --command-property k=v for the share consumer
#   REPEAT=3                                   runs per configuration; the median rate is shown.
#                                              The runs go round the configurations (one of
#                                              each, then the second of each, ...)
#   WARMUP=1                                   one run of the first configuration first, not
#                                              counted (0: none)
#   SKIP_CONSUME=1                             skip the consumer comparison
#   HOL_JOBS=20000 HOL_PARTITIONS=4 HOL_CONCURRENCY=200 HOL_PREFETCH=auto HOL_REPEAT=1 SKIP_HOL=1
#   HOL_BASE_PREFETCH=16                       the base binary's prefetch in the head-of-line run
#   HOL_PRIMED=1                               also run it for a group that has run before (8 jobs
#                                              first, so its share partitions are initialised and
#                                              the measured member is assigned them at once: a
#                                              worker restarting); 0: only the fresh group
#   HOL_ASSIGNMENT_INTERVAL_MS=                the hol group's share.assignment.interval.ms (broker
#                                              default 1000), set by the worker at start
#                                              ([groups.<group>] assignment_interval; the base
#                                              binary's group gets it from kafka-configs first)
#   RENEW_JOBS=1000 RENEW_LOCK_MS=15000 RENEW_PARTITIONS=4 SKIP_RENEW=1
#                                              renewal cost: RENEW_JOBS jobs, all running at once,
#                                              each for twice the group's lock (set to RENEW_LOCK_MS);
#                                              prints the RENEW settle calls (one ShareAcknowledge per
#                                              leader each) and the jobs accepted on a redelivery
#   MAX_LOAD=1.5 MAX_WAIT=900                  wait before each run while the 1-minute load average
#                                              is above MAX_LOAD, for at most MAX_WAIT s in total
#
# Every consumer is a process of its own, run under /usr/bin/time: CPU = its user + system
# seconds, peak RSS = its maximum resident set size. Each run gets a fresh group that starts
# from the earliest offset. Around each run the script also reads the broker's CPU time
# (/proc/<pid>/stat) and the whole machine's busy time (/proc/stat); "other CPU" is the busy
# time neither the consumer nor the broker used (other people's builds and tests).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
cd "$root"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$root/target/bench-embedded}"
PORT="${PORT:-29092}"
DIR="${DIR:-target/kafka/bench-$PORT}"
export KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx1g -Xms1g}"
TOPIC="${TOPIC:-bench-2m}"
PARTITIONS="${PARTITIONS:-8}"
RECORDS="${RECORDS:-2000000}"
RECORD_SIZE="${RECORD_SIZE:-100}"
IMPLS="${IMPLS:-shareworker java-share java-plain}"
SW_CONFIGS="${SW_CONFIGS:-32:auto 256:8192}"
SW_MAIN="${SW_MAIN:-32:auto}"
BASE_BIN="${BASE_BIN:-}"
BASE_CONFIGS="${BASE_CONFIGS:-32:16}"
JAVA_OPTS="${JAVA_OPTS:--Xmx512M -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true}"
JAVA_SHARE_PROPS="${JAVA_SHARE_PROPS:-}"
REPEAT="${REPEAT:-3}"
WARMUP="${WARMUP:-1}"
HOL_JOBS="${HOL_JOBS:-20000}"
HOL_PARTITIONS="${HOL_PARTITIONS:-4}"
HOL_CONCURRENCY="${HOL_CONCURRENCY:-200}"
HOL_PREFETCH="${HOL_PREFETCH:-auto}"
HOL_BASE_PREFETCH="${HOL_BASE_PREFETCH:-16}"
HOL_REPEAT="${HOL_REPEAT:-1}"
HOL_PRIMED="${HOL_PRIMED:-1}"
HOL_ASSIGNMENT_INTERVAL_MS="${HOL_ASSIGNMENT_INTERVAL_MS:-}"
RENEW_JOBS="${RENEW_JOBS:-1000}"
RENEW_LOCK_MS="${RENEW_LOCK_MS:-15000}"
RENEW_PARTITIONS="${RENEW_PARTITIONS:-4}"
MAX_LOAD="${MAX_LOAD:-1.5}"
MAX_WAIT="${MAX_WAIT:-900}"
B="127.0.0.1:$PORT"
K=(scripts/kafka.sh run-tool)

log() { echo "$*" >&2; }

log "building (release) in $CARGO_TARGET_DIR ..."
cargo build --release --manifest-path "$here/embedded/Cargo.toml" >&2
bin="$CARGO_TARGET_DIR/release/shareworker-bench-embedded"

# ------------------------------------------------------------------------------------ the broker
started=0
if scripts/kafka.sh status --port "$PORT" --dir "$DIR" >/dev/null 2>&1; then
    log "using the broker already running on port $PORT ($DIR)"
else
    scripts/kafka.sh start --port "$PORT" --dir "$DIR" >&2
    started=1
fi
stop_broker() {
    if ((started)); then scripts/kafka.sh stop --port "$PORT" --dir "$DIR" >&2 || true; fi
}
trap stop_broker EXIT
broker_pid="$(cat "$DIR/kafka.pid")"
version="$(cat "$DIR/version")"
cp="$(scripts/kafka.sh classpath --version "$version" tools)"
log4j="$root/target/kafka/$version/log4j2-tools.xml"

# ---------------------------------------------------------------------------------- the topic
end_offsets() { # sum of the topic's end offsets (0 when it does not exist)
    { "${K[@]}" get-offsets --bootstrap-server "$B" --topic "$1" 2>/dev/null || true; } \
        | awk -F: '{ s += $3 } END { print s + 0 }'
}
have="$(end_offsets "$TOPIC")"
if [[ "$have" == 0 ]]; then
    log "creating $TOPIC ($PARTITIONS partitions) and producing $RECORDS records of $RECORD_SIZE bytes"
    "${K[@]}" topics --bootstrap-server "$B" --create --topic "$TOPIC" --partitions "$PARTITIONS" \
        --replication-factor 1 >&2
    "${K[@]}" producer-perf --topic "$TOPIC" --num-records "$RECORDS" --throughput -1 \
        --record-size "$RECORD_SIZE" --bootstrap-server "$B" | tail -n 1 >&2
    have="$(end_offsets "$TOPIC")"
fi
[[ "$have" == "$RECORDS" ]] || { log "error: $TOPIC holds $have records, not $RECORDS"; exit 1; }

# ------------------------------------------------------------------------------ measuring runs
waited=0
loads=()
# Waits while the machine is busy (others compile and test here too), up to MAX_WAIT s in total.
wait_quiet() {
    local load
    while :; do
        load=$(cut -d' ' -f1 /proc/loadavg)
        if awk -v l="$load" -v m="$MAX_LOAD" 'BEGIN { exit !(l <= m) }'; then break; fi
        if ((waited >= MAX_WAIT)); then
            log "load $load is above $MAX_LOAD but the wait budget (${MAX_WAIT}s) is spent; running anyway"
            break
        fi
        log "load $load > $MAX_LOAD; waiting ..."
        sleep 10
        waited=$((waited + 10))
    done
    loads+=("$load")
    LOAD="$load"
}

thousands() { awk -v n="$1" 'BEGIN { s = sprintf("%.0f", n); o = ""; l = length(s)
    for (i = 1; i <= l; i++) { o = o substr(s, i, 1); if ((l - i) % 3 == 0 && i < l) o = o "," } print o }'; }
ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }              # utime + stime, 1/100 s
busy() { awk '/^cpu / { print $2 + $3 + $4 + $7 + $8 + $9 }' /proc/stat; } # all CPUs, 1/100 s

out="$(mktemp -d)"
# measure NAME CMD...: runs CMD under /usr/bin/time; sets CPU RSS_MIB BROKER_CPU OTHER_CPU WALL.
measure() {
    local name="$1"; shift
    local b0 t0 b1 t1
    b0=$(ticks "$broker_pid"); t0=$(busy)
    if ! /usr/bin/time -f '%U %S %M %e' -o "$out/time" "$@" >"$out/$name.out" 2>"$out/$name.err"; then
        log "---- $name failed:"; tail -n 20 "$out/$name.err" >&2; tail -n 5 "$out/$name.out" >&2
        exit 1
    fi
    b1=$(ticks "$broker_pid"); t1=$(busy)
    read -r u s m WALL <"$out/time"
    CPU=$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%.2f", u + s }')
    RSS_MIB=$(awk -v m="$m" 'BEGIN { printf "%.1f", m / 1024 }')
    BROKER_CPU=$(awk -v a="$b0" -v b="$b1" 'BEGIN { printf "%.2f", (b - a) / 100 }')
    OTHER_CPU=$(awk -v a="$t0" -v b="$t1" -v c="$CPU" -v k="$BROKER_CPU" \
        'BEGIN { o = (b - a) / 100 - c - k; if (o < 0) o = 0; printf "%.2f", o }')
}

run_id=0
declare -A ROW RATE
# One run of one consumer; sets RATE[$key] (records/s) and ROW[$key] (a markdown row, with @X@
# where its rate relative to the Java share consumer goes).
run_one() { # key impl concurrency prefetch
    local key="$1" impl="$2" c="${3:-}" p="${4:-}" group secs rate label settings acq="" settle=""
    run_id=$((run_id + 1))
    group="bench-$impl-$(date +%s)-$run_id"
    case "$impl" in
        shareworker|shareworker-base)
            local b="$bin"
            label=shareworker
            if [[ "$impl" == shareworker-base ]]; then b="$BASE_BIN"; label="shareworker (base)"; fi
            settings="$c / $p"
            measure "$key" "$b" kafka-consume --url "kafka://$B" --topic "$TOPIC" --group "$group" \
                --records "$RECORDS" --concurrency "$c" --prefetch "$p"
            # | concurrency | prefetch | records | time (s) | records/s | CPU | RSS | acquires | rec/acq | settles | acks/settle |
            local f
            f=$(awk -F'|' 'NF > 5 { for (i = 2; i <= 12; i++) { gsub(/[ ,]/, "", $i); printf "%s ", $i } }' "$out/$key.out")
            read -r _ _ _ secs rate _ _ a ar st sa <<<"$f"
            acq="$(thousands "$a") × $(thousands "$ar")"
            settle="$(thousands "$st") × $(thousands "$sa")"
            ;;
        java-share)
            label="Java share consumer"
            settings="\`--threads 1\`, ${JAVA_SHARE_PROPS:-defaults}"
            "${K[@]}" configs --bootstrap-server "$B" --alter --entity-type groups --entity-name "$group" \
                --add-config share.auto.offset.reset=earliest >/dev/null
            local props=()
            for kv in $JAVA_SHARE_PROPS; do props+=(--command-property "$kv"); done
            # shellcheck disable=SC2086 # JAVA_OPTS is a list of flags
            measure "$key" java $JAVA_OPTS -Dlog4j2.configurationFile="$log4j" -cp "$cp" \
                org.apache.kafka.tools.ShareConsumerPerformance --bootstrap-server "$B" --topic "$TOPIC" \
                --group "$group" --num-records "$RECORDS" --threads 1 --timeout 600000 \
                "${props[@]+"${props[@]}"}"
            # start.time, end.time, MB, MB.sec, nMsg.sec, nMsg, fetch.time.ms
            read -r secs rate < <(awk -F', ' 'NR == 2 { printf "%.3f %.0f\n", $7 / 1000, $5 }' "$out/$key.out")
            ;;
        java-plain)
            label="plain consumer group"
            settings="\`ConsumerPerformance\`"
            # shellcheck disable=SC2086
            measure "$key" java $JAVA_OPTS -Dlog4j2.configurationFile="$log4j" -cp "$cp" \
                org.apache.kafka.tools.ConsumerPerformance --bootstrap-server "$B" --topic "$TOPIC" \
                --group "$group" --num-records "$RECORDS" --timeout 600000
            # start, end, MB, MB.sec, nMsg, nMsg.sec, rebalance.time.ms, fetch.time.ms, ...
            read -r secs rate < <(awk -F', ' 'NR == 2 { printf "%.3f %.0f\n", $5 / $6, $6 }' "$out/$key.out")
            ;;
    esac
    [[ -n "${rate:-}" ]] || { log "no result from $impl"; cat "$out/$key.out" >&2; exit 1; }
    if grep -q WARNING "$out/$key.out"; then log "$impl: $(grep WARNING "$out/$key.out")"; exit 1; fi
    RATE[$key]=$rate
    ROW[$key]="| $label | $settings | $secs | $(thousands "$rate") | @X@ | $CPU | $RSS_MIB | $BROKER_CPU | $OTHER_CPU | $acq | $settle |"
    log "  $label ($settings): $secs s, $rate records/s, CPU $CPU s, peak RSS $RSS_MIB MiB, broker CPU $BROKER_CPU s, other CPU $OTHER_CPU s${acq:+, acquires $acq, settles $settle} (load before $LOAD)"
}

configs=()
[[ -n "${SKIP_CONSUME:-}" ]] && IMPLS=""
for impl in $IMPLS; do
    if [[ "$impl" == shareworker ]]; then
        for cfg in $SW_CONFIGS; do configs+=("shareworker:$cfg"); done
        if [[ -n "$BASE_BIN" ]]; then
            for cfg in $BASE_CONFIGS; do configs+=("shareworker-base:$cfg"); done
        fi
    else
        configs+=("$impl")
    fi
done

medians=()
declare -A MEDIAN_RATE MEDIAN_CPU MEDIAN_RSS MEDIAN_BROKER
# Warm-up: the first share group on a broker creates its share-state topic, and the broker's JIT
# warms up over the first runs; a first run costs the broker up to twice the CPU of the next.
if ((${#configs[@]})) && ((WARMUP)); then
    IFS=: read -r impl c p <<<"${configs[0]}"
    wait_quiet
    log "warm-up (not counted): ${configs[0]} (load $LOAD)"
    run_one warmup "$impl" "$c" "$p"
fi
# The runs go round the configurations (1 of each, then 2 of each, ...), so a broker that grows
# warmer or busier over the runs favours none of them.
declare -A KEYS
for ((r = 1; r <= REPEAT; r++)); do
    for cfg in "${configs[@]}"; do
        IFS=: read -r impl c p <<<"$cfg"
        wait_quiet
        log "$cfg run $r/$REPEAT (load $LOAD)"
        key="${cfg//:/_}_$r"
        run_one "$key" "$impl" "$c" "$p"
        KEYS[$cfg]="${KEYS[$cfg]:-} $key"
    done
done
for cfg in "${configs[@]}"; do
    read -r -a keys <<<"${KEYS[$cfg]}"
    # The run with the median rate.
    mid=$(for k in "${keys[@]}"; do echo "${RATE[$k]} $k"; done | sort -n | awk -v n="${#keys[@]}" 'NR == int((n + 1) / 2) { print $2 }')
    medians+=("${ROW[$mid]}")
    MEDIAN_RATE[$cfg]=${RATE[$mid]}
    MEDIAN_CPU[$cfg]=$(echo "${ROW[$mid]}" | awk -F'|' '{ gsub(/ /, "", $7); print $7 }')
    MEDIAN_RSS[$cfg]=$(echo "${ROW[$mid]}" | awk -F'|' '{ gsub(/ /, "", $8); print $8 }')
    MEDIAN_BROKER[$cfg]=$(echo "${ROW[$mid]}" | awk -F'|' '{ gsub(/ /, "", $9); print $9 }')
    # (columns: consumer, settings, time, records/s, x Java, CPU, RSS, ...)
    log "$cfg:"
    for k in "${keys[@]}"; do log "    ${ROW[$k]}"; done
done

if ((${#configs[@]})); then
echo
echo "### Consuming $(thousands "$RECORDS") records of $RECORD_SIZE bytes from $PARTITIONS partitions (median of $REPEAT)"
echo
echo "| consumer | concurrency / prefetch | time (s) | records/s | × Java share | CPU (s) | peak RSS (MiB) | broker CPU (s) | other CPU (s) | acquire calls × records | settle calls × acks |"
echo "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
for row in "${medians[@]}"; do
    rate=$(echo "$row" | awk -F'|' '{ gsub(/[ ,]/, "", $5); print $5 }')
    x=$(awk -v r="$rate" -v j="${MEDIAN_RATE[java-share]:-}" 'BEGIN { if (j > 0) printf "%.2f", r / j }')
    echo "${row/@X@/$x}"
done

echo
echo "Broker CPU per record (µs, the median run's broker CPU / records; less sensitive to load than rates):"
for cfg in "${configs[@]}"; do
    [[ -n "${MEDIAN_BROKER[$cfg]:-}" ]] || continue
    awk -v c="$cfg" -v b="${MEDIAN_BROKER[$cfg]}" -v n="$RECORDS" -v j="${MEDIAN_BROKER[java-share]:-}" \
        'BEGIN { printf "- %s: %.2f µs/record", c, b * 1e6 / n; if (j > 0) printf " (%.2fx Java share)", b / j; printf "\n" }'
done
echo
for cfg in "${configs[@]}"; do
    [[ "$cfg" == shareworker* && -n "${MEDIAN_RATE[java-share]:-}" ]] || continue
    awk -v c="$cfg" -v r="${MEDIAN_RATE[$cfg]}" -v j="${MEDIAN_RATE[java-share]}" \
        'BEGIN { printf "%s / Java share consumer (its defaults): %.2fx records/s\n", c, r / j }'
done
main="shareworker:$SW_MAIN"
if [[ -n "${MEDIAN_RATE[$main]:-}" && -n "${MEDIAN_RATE[java-share]:-}" ]]; then
    echo
    awk -v r="${MEDIAN_RATE[$main]}" -v j="${MEDIAN_RATE[java-share]}" -v m="${MEDIAN_RSS[$main]}" \
        -v jm="${MEDIAN_RSS[java-share]}" -v c="${MEDIAN_CPU[$main]}" -v jc="${MEDIAN_CPU[java-share]}" -v cfg="$SW_MAIN" \
        'BEGIN { printf "shareworker (%s) / Java share consumer: %.2fx records/s (target >= 1.5: %s), %.2fx peak RSS (target <= 0.25: %s), %.2fx CPU\n",
            cfg, r / j, (r / j >= 1.5 ? "met" : "NOT met"), m / jm, (m / jm <= 0.25 ? "met" : "NOT met"), c / jc }'
fi
if [[ -n "${MEDIAN_RATE[$main]:-}" && -n "${MEDIAN_RATE[java-plain]:-}" ]]; then
    awk -v r="${MEDIAN_RATE[$main]}" -v p="${MEDIAN_RATE[java-plain]}" -v cfg="$SW_MAIN" \
        'BEGIN { printf "shareworker (%s) / plain consumer group: %.3fx records/s (target >= 0.8: %s)\n", cfg, r / p, (r / p >= 0.8 ? "met" : "NOT met") }'
fi
fi

if [[ -z "${SKIP_HOL:-}" ]]; then
    echo
    echo "### Head of line on Kafka: lognormal handler times (mean 50 ms, sigma 0.5) with 5% of jobs taking 2 s"
    echo
    header=--header
    for ((r = 1; r <= HOL_REPEAT; r++)); do
        wait_quiet
        run_id=$((run_id + 1))
        t="bench-hol-$(date +%s)-$run_id"
        # The worker sets the group's assignment interval at start (groups.<group>.assignment_interval).
        interval=()
        if [[ -n "$HOL_ASSIGNMENT_INTERVAL_MS" ]]; then
            interval=(--assignment-interval-ms "$HOL_ASSIGNMENT_INTERVAL_MS")
        fi
        log "kafka-hol --topic $t --jobs $HOL_JOBS --partitions $HOL_PARTITIONS --concurrency $HOL_CONCURRENCY ${interval[*]} (load $LOAD)"
        measure hol "$bin" kafka-hol --url "kafka://$B" --topic "$t" --jobs "$HOL_JOBS" \
            --partitions "$HOL_PARTITIONS" --concurrency "$HOL_CONCURRENCY" --prefetch "$HOL_PREFETCH" \
            "${interval[@]}" $header
        cat "$out/hol.out"
        grep -E '^hol|^  ' "$out/hol.err" >&2 || true
        log "  CPU $CPU s, peak RSS $RSS_MIB MiB, broker CPU $BROKER_CPU s, other CPU $OTHER_CPU s"
        header=
        if [[ -n "$BASE_BIN" ]]; then
            wait_quiet
            run_id=$((run_id + 1))
            t="bench-hol-base-$(date +%s)-$run_id"
            if [[ -n "$HOL_ASSIGNMENT_INTERVAL_MS" ]]; then
                "${K[@]}" configs --bootstrap-server "$B" --alter --entity-type groups --entity-name "$t" \
                    --add-config "share.assignment.interval.ms=$HOL_ASSIGNMENT_INTERVAL_MS" >/dev/null
            fi
            log "base: kafka-hol --topic $t --prefetch $HOL_BASE_PREFETCH (load $LOAD)"
            measure hol "$BASE_BIN" kafka-hol --url "kafka://$B" --topic "$t" --jobs "$HOL_JOBS" \
                --partitions "$HOL_PARTITIONS" --concurrency "$HOL_CONCURRENCY" --prefetch "$HOL_BASE_PREFETCH"
            sed 's/^| /| (base) /' "$out/hol.out"
            grep -E '^hol|^  ' "$out/hol.err" >&2 || true
            log "  base: CPU $CPU s, peak RSS $RSS_MIB MiB, broker CPU $BROKER_CPU s, other CPU $OTHER_CPU s"
        fi
        if ((HOL_PRIMED)); then
            # The same workload for a group that has run before (a worker restarting): a first
            # run of 8 jobs on the topic initialises the group's share partitions, so the
            # measured run's member is assigned them in its first heartbeat.
            wait_quiet
            run_id=$((run_id + 1))
            t="bench-hol-primed-$(date +%s)-$run_id"
            log "primed: kafka-hol --topic $t --jobs 8, then --jobs $HOL_JOBS (load $LOAD)"
            "$bin" kafka-hol --url "kafka://$B" --topic "$t" --jobs 8 --partitions "$HOL_PARTITIONS" \
                --concurrency "$HOL_CONCURRENCY" --prefetch "$HOL_PREFETCH" >/dev/null 2>&1
            measure hol "$bin" kafka-hol --url "kafka://$B" --topic "$t" --jobs "$HOL_JOBS" \
                --partitions "$HOL_PARTITIONS" --concurrency "$HOL_CONCURRENCY" --prefetch "$HOL_PREFETCH"
            sed 's/^| /| (group run before) /' "$out/hol.out"
            grep -E '^hol|^  ' "$out/hol.err" >&2 || true
            log "  primed: CPU $CPU s, peak RSS $RSS_MIB MiB, broker CPU $BROKER_CPU s, other CPU $OTHER_CPU s"
        fi
    done
fi

if [[ -z "${SKIP_RENEW:-}" ]]; then
    wait_quiet
    run_id=$((run_id + 1))
    t="bench-renew-$(date +%s)-$run_id"
    "${K[@]}" configs --bootstrap-server "$B" --alter --entity-type groups --entity-name "$t" \
        --add-config "share.record.lock.duration.ms=$RENEW_LOCK_MS" >/dev/null
    work_ms=$((2 * RENEW_LOCK_MS))
    log "renewal: $RENEW_JOBS jobs of ${work_ms} ms at once, lock ${RENEW_LOCK_MS} ms (load $LOAD)"
    measure renew "$bin" kafka-hol --url "kafka://$B" --topic "$t" --jobs "$RENEW_JOBS" \
        --partitions "$RENEW_PARTITIONS" --concurrency "$RENEW_JOBS" --slow-frac 1 --slow-ms "$work_ms"
    grep -E '^hol|^  ' "$out/renew.err" >&2 || true
    secs=$(sed -n 's/.*ran \([0-9.]*\) s.*/\1/p' "$out/renew.err" | head -1)
    calls=$(sed -n 's/.*settle calls with RENEW \([0-9]*\), \([0-9]*\) RENEWs.*/\1 \2/p' "$out/renew.err" | head -1)
    again=$(sed -n 's/.*accepted on a redelivery \([0-9]*\).*/\1/p' "$out/renew.err" | head -1)
    echo
    echo "### Renewal cost on Kafka: $RENEW_JOBS jobs of $work_ms ms at once, lock $RENEW_LOCK_MS ms, 1 broker"
    echo
    read -r rc rn <<<"${calls:-0 0}"
    awk -v s="${secs:-0}" -v rc="$rc" -v rn="$rn" -v l="$RENEW_LOCK_MS" -v a="${again:-?}" -v b="$BROKER_CPU" \
        'BEGIN { h = s * 1000 / (l / 2); printf "ran %.1f s (%.1f half-locks): %d RENEW settle calls (%.2f per leader per half-lock), %d RENEWs; %s jobs accepted on a redelivery; broker CPU %.2f s\n", s, h, rc, (h > 0 ? rc / h : 0), rn, a, b }'
fi

echo
lo=$(printf '%s\n' "${loads[@]}" | sort -n | head -1)
hi=$(printf '%s\n' "${loads[@]}" | sort -n | tail -1)
echo "1-minute load average before the runs: ${lo} to ${hi} (waited ${waited}s for a quieter machine; nproc $(nproc))."
rm -rf "$out"
