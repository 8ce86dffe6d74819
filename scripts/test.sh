#!/usr/bin/env bash
# The project's test command (the README's second command): every test of the workspace, the
# Kafka ones against a real Kafka broker that this script fetches (Maven) and starts.
#
#   scripts/test.sh [extra cargo test args]
#
# KAFKA_BOOTSTRAP=host:port   use that broker instead of starting one
# SHAREWORKER_KAFKA=off       do not start a broker (the Kafka tests then skip, or fail under CI=true)
# KAFKA_TEST_VERSION          the Kafka release to start (default 4.4.0)
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The Kafka tests mostly wait on real lock timers and backoffs: run more of them at once than
# there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
port="${KAFKA_TEST_PORT:-19092}"
dir="target/kafka/test-$port"
version="${KAFKA_TEST_VERSION:-4.4.0}"

# Build first, so the broker is not left waiting while everything compiles.
cargo test --workspace --locked --no-run "$@"

if [ -z "${KAFKA_BOOTSTRAP:-}" ] && [ "${SHAREWORKER_KAFKA:-on}" != off ]; then
  echo "== starting Kafka $version on 127.0.0.1:$port (scripts/kafka.sh) =="
  scripts/kafka.sh fetch "$version"
  # shellcheck disable=SC2064
  trap "scripts/kafka.sh stop --port $port --dir $dir >/dev/null 2>&1 || true" EXIT
  scripts/kafka.sh start --version "$version" --port "$port" --dir "$dir"
  export KAFKA_BOOTSTRAP="127.0.0.1:$port"
fi

echo "== cargo test (workspace; KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-none}) =="
cargo test --workspace --locked "$@"
