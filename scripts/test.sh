#!/usr/bin/env bash
# The project's test command (the README's second command): every test of the workspace, the
# Kafka ones against a real Kafka broker that this script fetches (Maven) and starts.
#
#   scripts/test.sh [extra cargo test args]
#
# KAFKA_BOOTSTRAP=host:port   use that broker instead of starting one
# KAFKA42_BOOTSTRAP=host:port the Kafka 4.2 broker for the 4.2 conformance run, likewise
# TEST_KAFKA=off              start no broker (the Kafka tests then skip, or fail under CI=true)
# KAFKA_TEST_VERSION          the Kafka release for every Kafka test (default 4.4.0), also of the
#                             brokers the cluster and fault tests start for themselves (kafka.sh
#                             cluster on 25100-25105, a proxied broker on 25120-25132)
# KAFKA42_TEST_VERSION        the 4.2 release for the conformance suite (default 4.2.2)
# TEST_PROMETHEUS=off         do not install Prometheus (its tests then skip, or fail under CI=true)
# TEST_TEMPLATE=off           skip scripts/template-test.sh (the worker template); ignored under CI=true
#
# Switches here are not named SHAREWORKER_*: that prefix is the worker's configuration.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
# The Kafka tests mostly wait on real lock timers and backoffs: run more of them at once than
# there are cores.
export RUST_TEST_THREADS="${RUST_TEST_THREADS:-8}"
port="${KAFKA_TEST_PORT:-19092}"
version="${KAFKA_TEST_VERSION:-4.4.0}"
export KAFKA_TEST_VERSION="$version"

# Build first, so the broker is not left waiting while everything compiles.
cargo test --workspace --locked --no-run "$@"

stops=()
cleanup() { for s in "${stops[@]}"; do eval "$s" >/dev/null 2>&1 || true; done; }
trap cleanup EXIT

# start_kafka VERSION PORT VAR: starts a broker unless VAR already names one, and exports VAR.
start_kafka() {
  local v="$1" p="$2" var="$3" d="target/kafka/test-$2"
  if [ -n "${!var:-}" ] || [ "${TEST_KAFKA:-on}" = off ]; then
    return
  fi
  echo "== starting Kafka $v on 127.0.0.1:$p for $var (scripts/kafka.sh) =="
  scripts/kafka.sh fetch "$v"
  stops+=("scripts/kafka.sh stop --port $p --dir $d")
  scripts/kafka.sh start --version "$v" --port "$p" --dir "$d"
  export "$var=127.0.0.1:$p"
}

# The pinned release for every Kafka test, and the newest 4.2.x for the conformance suite.
start_kafka "$version" "$port" KAFKA_BOOTSTRAP
start_kafka "${KAFKA42_TEST_VERSION:-4.2.2}" "${KAFKA42_TEST_PORT:-19392}" KAFKA42_BOOTSTRAP

# A real Prometheus server and promtool for the metrics tests (Debian package, apt-get).
if [ "${TEST_PROMETHEUS:-on}" != off ]; then
  scripts/prometheus.sh ensure
fi

echo "== cargo test (workspace; KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-none} KAFKA42_BOOTSTRAP=${KAFKA42_BOOTSTRAP:-none}) =="
# --no-fail-fast: one failing test binary must not hide the others.
cargo test --workspace --locked --no-fail-fast "$@"

# The brokers are done with; the worker template needs none.
cleanup
stops=()

# The worker template, rendered with cargo-generate and tested outside the workspace.
if [ "${TEST_TEMPLATE:-on}" = off ] && [ "${CI:-}" != true ]; then
  echo "== worker template: skipped (TEST_TEMPLATE=off) =="
else
  echo "== worker template: scripts/template-test.sh =="
  scripts/template-test.sh
fi
