#!/usr/bin/env bash
# Makes a real Prometheus server and promtool available for the tests (Debian package
# `prometheus`), installing it with apt-get when missing.
#
#   scripts/prometheus.sh ensure     install unless `prometheus` and `promtool` are on PATH
#
# The tests look for the binaries on PATH (or PROMETHEUS_BIN / PROMTOOL_BIN) and fail under
# CI=true when they are missing.
set -euo pipefail

ensure() {
  if command -v prometheus >/dev/null && command -v promtool >/dev/null; then
    echo "prometheus: $(command -v prometheus) ($(prometheus --version 2>&1 | head -1))"
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "prometheus and promtool are missing; install the Debian package as root: apt-get install prometheus" >&2
    exit 1
  fi
  echo "== installing the Debian package prometheus (server and promtool) =="
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  # The package's service is not started here (no init system in a container or CI shell).
  apt-get install -y -q --no-install-recommends prometheus >/dev/null
  # Some images start the service from the package's postinst; tests start their own.
  pkill -x prometheus 2>/dev/null || true
  prometheus --version 2>&1 | head -1
}

case "${1:-}" in
  ensure) ensure ;;
  *) echo "usage: $0 ensure" >&2; exit 2 ;;
esac
