#!/usr/bin/env bash
# Fuzzes what the Kafka client reads from a broker (response frames of every API and version it
# sends, ShareFetch record batches, the frame reader) for longer than the short seeded run that
# `cargo test` does (fuzz/tests/fuzz.rs). Stable Rust; see fuzz/src/lib.rs for how it works.
#
#   scripts/fuzz.sh [seconds] [extra arguments of shareworker-fuzz]
#
# seconds      total time, shared by the targets in turns (default 600)
# extra        e.g. --seed N (default: the clock; printed, so a run can be repeated),
#              --target records, --alloc-limit-mib 64, --timeout-secs 10
#
# A panic is saved under target/fuzz/findings/; an oversized allocation or a stuck input aborts
# with the input in hex on stderr. Either way the exit status is non-zero. Once fixed, save the
# input as fuzz/regressions/<target, '/' as '-'>/<name>.hex with `# expect: error` (or ok) and a
# comment, and `cargo test -p shareworker-fuzz` replays it from then on.
# Replay one input: target/release/shareworker-fuzz --replay <target> <file.hex>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
shift || true
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
cargo build --locked --release -p shareworker-fuzz
exec target/release/shareworker-fuzz --seconds "$seconds" "$@"
