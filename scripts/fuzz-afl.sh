#!/usr/bin/env bash
# Coverage-guided fuzzing with AFL++ (through cargo-afl, stable Rust) of the same targets as
# scripts/fuzz.sh: optional, for long runs; CI runs the mutational harness instead (see
# fuzz/src/lib.rs for why). Installs cargo-afl from crates.io under target/afl-tools and has it
# build AFL++ from its bundled sources (make and a C compiler needed; a few minutes, once).
#
#   scripts/fuzz-afl.sh [seconds] [records|responses|frames]
#
# seconds   how long AFL++ runs (default 600); target defaults to records
#
# Crashes (panics, and allocations above 64 MiB, which abort) land in
# target/fuzz/afl/out-<target>/default/crashes/. Replay one with
#   target/release/shareworker-fuzz --replay <target> <file>
# after turning it into hex (`xxd -p`; a responses input's first byte picks the API and is not
# part of the frame).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-600}"
target="${2:-records}"
tools="$PWD/target/afl-tools"
export PATH="$tools/bin:$PATH"
export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CARGO_TARGET_DIR="$PWD/target/afl"

if ! command -v cargo-afl >/dev/null; then
  cargo install --locked --root "$tools" cargo-afl
fi
# Builds AFL++ once per toolchain; says so and fails when it is already built.
cargo afl config --build >/dev/null 2>&1 || true

(cd fuzz/afl && cargo afl build --release --locked)
work="$PWD/target/fuzz/afl"
"$CARGO_TARGET_DIR/release/seeds" "$work/seeds"

# No core-dump handler or CPU governor tuning on CI-like machines: let AFL++ run anyway.
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_NO_AFFINITY=1
cargo afl fuzz -i "$work/seeds/$target" -o "$work/out-$target" -V "$seconds" \
  "$CARGO_TARGET_DIR/release/$target" || true
crashes=$(find "$work/out-$target/default/crashes" -type f -name 'id:*' 2>/dev/null | wc -l)
echo "AFL++ on $target for ${seconds}s: $crashes crash(es) in $work/out-$target/default/crashes"
[ "$crashes" -eq 0 ]
