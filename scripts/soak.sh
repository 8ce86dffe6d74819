#!/usr/bin/env bash
# scripts/soak.sh: a soak run on a real Kafka broker, by hand (not in CI).
#
#   scripts/soak.sh                      20 minutes at 200 jobs/s
#   SOAK_MINUTES=5 RATE=100 scripts/soak.sh
#
# Starts its own single Kafka broker (scripts/kafka.sh, loopback only, port SOAK_PORT, default
# 25260, data in target/kafka/soak-<port>, killed when this script exits), builds the `soak`
# binary of shareworker-tests and runs `soak kafka`: one worker and a steady producer in one
# process for SOAK_MINUTES, every 50th job failing once (2 %) then succeeding. Every SAMPLE_SECS
# it prints the process's resident memory and open file descriptors (from /proc/self) and the
# tokio runtime's alive tasks. At the end it waits for every produced job to be accepted or
# dead-lettered and checks: nothing lost (every produced record accepted or dead-lettered), none
# done twice, and resident memory after WARMUP_MINUTES within RSS_TOLERANCE_PCT (default 10) of
# its minimum (the soak's own bookkeeping holds only the records in flight). Exit status 0 when
# all hold. The output goes to target/soak/soak-<time>.log as well.
#
# Env: SOAK_MINUTES (default 20), RATE (jobs/s, default 200), SAMPLE_SECS (default 10),
# WARMUP_MINUTES (default 2, or a fifth of the run if that is less), DRAIN_SECS (default 180),
# SOAK_PORT (default 25260; the controller takes the next port), HANDLE_MS (default 5),
# SOAK_PROFILE (dev or release, default release), RSS_TOLERANCE_PCT (default 10),
# CARGO_TARGET_DIR (where the binary is built, default target/).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
die() { echo "soak.sh: error: $*" >&2; exit 1; }
num() { [[ "$2" =~ ^[0-9]+$ ]] || die "$1 must be a whole number, got '$2'"; }

MINUTES="${SOAK_MINUTES:-20}"
RATE="${RATE:-200}"
SAMPLE_SECS="${SAMPLE_SECS:-10}"
DRAIN_SECS="${DRAIN_SECS:-180}"
PORT="${SOAK_PORT:-25260}"
HANDLE_MS="${HANDLE_MS:-5}"
PROFILE="${SOAK_PROFILE:-release}"
TOLERANCE="${RSS_TOLERANCE_PCT:-10}"
for v in MINUTES RATE SAMPLE_SECS DRAIN_SECS PORT HANDLE_MS TOLERANCE; do num "$v" "${!v}"; done
(( MINUTES >= 1 && MINUTES <= 24 * 60 )) || die "SOAK_MINUTES must be 1 to 1440"
(( RATE >= 1 && RATE <= 100000 )) || die "RATE must be 1 to 100000"
(( PORT >= 1024 && PORT <= 65534 )) || die "SOAK_PORT must be 1024 to 65534"
(( SAMPLE_SECS >= 1 )) || die "SAMPLE_SECS must be at least 1"
case "$PROFILE" in dev|release) ;; *) die "SOAK_PROFILE must be dev or release" ;; esac
SECS=$(( MINUTES * 60 ))
WARMUP_SECS=$(( ${WARMUP_MINUTES:-2} * 60 ))
(( WARMUP_SECS <= SECS / 5 )) || WARMUP_SECS=$(( SECS / 5 ))

TARGET="${CARGO_TARGET_DIR:-$ROOT/target}"
case "$PROFILE" in dev) BIN="$TARGET/debug/soak" ;; release) BIN="$TARGET/release/soak" ;; esac
# The broker's data and the logs stay inside this checkout's target/.
DIR="$ROOT/target/kafka/soak-$PORT"
OUT="$ROOT/target/soak"
case "$DIR" in "$ROOT"/target/kafka/soak-*) ;; *) die "refusing broker dir $DIR" ;; esac
mkdir -p "$OUT"
LOG="$OUT/soak-$(date -u +%Y%m%dT%H%M%SZ).log"

echo "soak.sh: building the soak binary ($PROFILE)" >&2
(cd "$ROOT" && cargo build --locked -p shareworker-tests --bin soak --profile "$PROFILE" >&2)
[[ -x "$BIN" ]] || die "no binary at $BIN"
# A copy, so that another build into a shared target dir cannot swap it during the run.
cp "$BIN" "$OUT/soak-bin"

stop_broker() { "$ROOT/scripts/kafka.sh" stop --port "$PORT" --dir "$DIR" >/dev/null 2>&1 || true; }
trap stop_broker EXIT
echo "soak.sh: starting Kafka on 127.0.0.1:$PORT (data in $DIR)" >&2
rm -rf -- "$DIR"
"$ROOT/scripts/kafka.sh" start --port "$PORT" --dir "$DIR" --owner-pid $$ >&2

{
  echo "# scripts/soak.sh $(date -u +%FT%TZ) minutes=$MINUTES rate=$RATE warmup_s=$WARMUP_SECS profile=$PROFILE"
  echo "# $(nproc) cpus, load: $(cut -d' ' -f1-3 /proc/loadavg), commit $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)"
} | tee "$LOG"
set +e
KAFKA_BOOTSTRAP="127.0.0.1:$PORT" SOAK_SECS="$SECS" RATE="$RATE" SAMPLE_SECS="$SAMPLE_SECS" \
  WARMUP_SECS="$WARMUP_SECS" DRAIN_SECS="$DRAIN_SECS" HANDLE_MS="$HANDLE_MS" \
  RSS_TOLERANCE_PCT="$TOLERANCE" RUST_LOG="${RUST_LOG:-warn}" \
  timeout --signal=TERM --kill-after=30 "$(( SECS + DRAIN_SECS + 120 ))" \
  "$OUT/soak-bin" kafka 2> >(grep -v "failing once on purpose" >&2) | tee -a "$LOG"
status=${PIPESTATUS[0]}
set -e
echo "# load at the end: $(cut -d' ' -f1-3 /proc/loadavg); exit status $status" | tee -a "$LOG"
echo "soak.sh: log in $LOG" >&2
exit "$status"
