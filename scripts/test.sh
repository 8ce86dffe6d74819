#!/usr/bin/env bash
# The project's test command (the README's second command): formatting, lints and every test.
# Usage: scripts/test.sh [extra cargo test args]
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"

echo "== cargo test (workspace) =="
cargo test --workspace --locked "$@"
