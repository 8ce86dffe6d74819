#!/usr/bin/env bash
# Tests worker-template/ the way a user gets it: renders it with the real cargo-generate outside
# this workspace, runs the generated crate's fmt, clippy and tests (embedded broker), starts its
# binary once (it must join its group, answer /healthz and /readyz once the runtime serves HTTP,
# and exit 0 on SIGTERM), and validates its Kubernetes and KEDA manifests (and those in
# docs/deploy.md and README.md) against the real schemas; broken copies must fail that validation.
#
#   scripts/template-test.sh
#
# Everything it fetches is cached under target/, so a rerun only rebuilds the generated crate:
#   target/tools/bin/cargo-generate   cargo-generate 0.23.14 (crates.io, cargo install --locked --debug)
#   target/template-test/venv         kubernetes-validate, jsonschema, PyYAML (PyPI, pinned below)
#   target/template-test/gomod        KEDA's Go module, for its CRDs (Go module proxy, `go mod download`)
#   target/template-test/cargo        CARGO_TARGET_DIR of the generated crate
#
# KUBE_VERSIONS   Kubernetes releases whose schemas the manifests must pass (default "1.30 1.37")
# KEDA_VERSIONS   KEDA releases whose ScaledObject CRD they must pass (default "v2.15.1 v2.21.0")
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=$repo/target/template-test
mkdir -p "$work"

CARGO_GENERATE_VERSION=0.23.14
KUBE_VERSIONS="${KUBE_VERSIONS:-1.30 1.37}"
KEDA_VERSIONS="${KEDA_VERSIONS:-v2.15.1 v2.21.0}"
PYTHON_PACKAGES=(kubernetes-validate==1.37.0 jsonschema==4.26.0 PyYAML==6.0.3)

# The values the template is rendered with: none of them a default, so a placeholder that is not
# passed through shows up in the tests.
NAME=tt-worker
TOPIC=template-test.jobs
GROUP=template-test-group
CONCURRENCY=7

start=$(date +%s)
passed=0
step() { echo "== template-test: $* ($(($(date +%s) - start))s) =="; }
pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { echo "template-test: FAILED: $*" >&2; echo "template-test: $passed passed, 1 failed"; exit 1; }

# The generated crate reads SHAREWORKER_* as configuration (an unknown key stops it): none of
# this shell's SHAREWORKER_* variables may leak into its tests and its run.
clean_env=(env)
while IFS='=' read -r var _; do
  clean_env+=(-u "$var")
done < <(env | grep -E '^SHAREWORKER_[A-Za-z0-9_]*=' || true)

step "cargo-generate $CARGO_GENERATE_VERSION"
cg=$repo/target/tools/bin/cargo-generate
if ! "$cg" --version 2>/dev/null | grep -qF " $CARGO_GENERATE_VERSION"; then
  t0=$(date +%s)
  # --debug: rendering a template needs no optimised build, and cargo-generate's release profile
  # (LTO, one codegen unit) takes 1.6 times the CPU time to build (4m13s against 2m35s here).
  cargo install --debug --locked --version "$CARGO_GENERATE_VERSION" cargo-generate --root "$repo/target/tools"
  echo "installed cargo-generate in $(($(date +%s) - t0))s"
fi
"$cg" --version

step "Python venv for the schema validator"
venv=$work/venv
stamp="${PYTHON_PACKAGES[*]}"
if [ "$(cat "$venv/.packages" 2>/dev/null)" != "$stamp" ]; then
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${PYTHON_PACKAGES[@]}"
  echo "$stamp" >"$venv/.packages"
fi
py=$venv/bin/python

step "KEDA CRDs from the Go module proxy ($KEDA_VERSIONS)"
command -v go >/dev/null || fail "go is not installed: it fetches KEDA's CRDs (Go module github.com/kedacore/keda/v2)"
crd_dirs=()
for v in $KEDA_VERSIONS; do
  # Outside any Go module; -modcacherw so that `cargo clean` can delete the cache.
  dir=$(cd "$work" && GOMODCACHE="$work/gomod" GOFLAGS=-modcacherw GO111MODULE=on GOWORK=off \
    go mod download -json "github.com/kedacore/keda/v2@$v" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])') ||
    fail "cannot download KEDA $v from the Go module proxy"
  [ -f "$dir/config/crd/bases/keda.sh_scaledobjects.yaml" ] || fail "KEDA $v has no config/crd/bases/keda.sh_scaledobjects.yaml"
  crd_dirs+=("$dir/config/crd/bases")
done

step "render worker-template/ outside the workspace"
out=$(mktemp -d "${TMPDIR:-/tmp}/shareworker-template.XXXXXX")
trap 'rm -rf "$out"' EXIT
# Cargo takes the nearest Cargo.toml with [workspace] above a package for its workspace, and
# cargo-generate adds a crate generated inside a workspace to its members: neither may happen.
d=$out
while [ "$d" != / ]; do
  [ ! -e "$d/Cargo.toml" ] || fail "$d/Cargo.toml is above the render directory $out: set TMPDIR elsewhere"
  d=$(dirname "$d")
done
"$cg" generate --path "$repo/worker-template" --destination "$out" --name "$NAME" --vcs none --silent \
  --define "shareworker_path=$repo/runtime" --define "topic=$TOPIC" --define "group=$GROUP" \
  --define "concurrency=$CONCURRENCY"
crate=$out/$NAME
# The defaults: the crates.io dependency, and the group named after the project.
"$cg" generate --path "$repo/worker-template" --destination "$out" --name defaults-worker --vcs none --silent
defaults=$out/defaults-worker
git -C "$repo" diff --quiet -- Cargo.toml || fail "rendering changed the workspace's Cargo.toml"
grep -qxF "shareworker = { path = \"$repo/runtime\" }" "$crate/Cargo.toml" ||
  fail "the generated Cargo.toml does not depend on $repo/runtime by path"
grep -qxF 'shareworker = "0.1"' "$defaults/Cargo.toml" ||
  fail "without shareworker_path the generated Cargo.toml must depend on shareworker = \"0.1\""
grep -qF 'group="defaults-worker"' "$defaults/deploy/keda-scaledobject.yaml" ||
  fail "the group does not default to the project name"
if grep -rn -e '{{' -e '{%' "$crate" "$defaults"; then
  fail "unrendered Liquid left in the generated crates (above)"
fi
pass "rendered $crate (path dependency) and $defaults (defaults)"

step "the generated crate: fmt, clippy, test"
# The workspace's lockfile pins the versions this repository is tested with; cargo adds the rest.
cp "$repo/Cargo.lock" "$crate/Cargo.lock"
cd "$crate"
root=$(cargo locate-project --workspace --message-format plain)
[ "$root" = "$crate/Cargo.toml" ] || fail "cargo takes $root for the generated crate's workspace"
export CARGO_TARGET_DIR=$work/cargo
"${clean_env[@]}" cargo fmt --check || fail "the generated crate is not rustfmt-clean"
pass "cargo fmt --check"
"${clean_env[@]}" cargo clippy --all-targets -- -D warnings || fail "clippy warns on the generated crate"
pass "cargo clippy --all-targets -- -D warnings"
"${clean_env[@]}" cargo test || fail "the generated crate's tests"
pass "cargo test (the generated crate)"

step "the generated binary, with the Deployment's environment, starts, joins its group, answers its probes and stops on SIGTERM"
# run_worker [VAR=value...]: starts the generated binary in the crate folder (so it reads the
# rendered shareworker.toml), logging to $log; its pid in $pid.
log=$out/worker.log
run_worker() {
  "${clean_env[@]}" RUST_LOG=info NO_COLOR=1 "$@" "$CARGO_TARGET_DIR/debug/$NAME" >"$log" 2>&1 &
  pid=$!
}
# True once the log says the worker joined its group; false when it exits first or after 10 s.
joined() {
  for _ in $(seq 1 100); do
    grep -q "joined share group.*$GROUP" "$log" && return 0
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.1
  done
  return 1
}
stop_worker() {
  kill -TERM "$pid" 2>/dev/null || true
  status=0
  wait "$pid" || status=$?
  cat "$log"
}
port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# The environment deploy/deployment.yaml gives the container, less the Kafka broker: the worker
# must accept it as configuration.
mapfile -t deploy_env < <("$py" -c '
import sys, yaml
doc = yaml.safe_load(open(sys.argv[1]))
for c in doc["spec"]["template"]["spec"]["containers"]:
    for e in c.get("env", []):
        if e["name"] != "SHAREWORKER_BROKER":
            print(e["name"] + "=" + str(e["value"]))
' "$crate/deploy/deployment.yaml")
[ ${#deploy_env[@]} -gt 0 ] || fail "no environment read from deploy/deployment.yaml"
echo "the Deployment's environment: ${deploy_env[*]}"
probes=true
run_worker "${deploy_env[@]}" SHAREWORKER_HTTP__ADDRESS="127.0.0.1:$port"
# shellcheck disable=SC2016 # the backquotes are literal
if ! joined && grep -qF 'unknown field: found `http`' "$log"; then
  stop_worker
  echo "note: this runtime has no [http] configuration yet (above): /healthz and /readyz not checked"
  probes=false
  run_worker "${deploy_env[@]}"
fi
joined || { stop_worker; fail "the generated worker did not join group $GROUP (log above)"; }
if $probes; then
  for path in /healthz /readyz; do
    code=
    for _ in $(seq 1 50); do
      code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "http://127.0.0.1:$port$path" || true)
      [ "$code" = 200 ] && break
      sleep 0.1
    done
    [ "$code" = 200 ] || { stop_worker; fail "GET $path on the generated worker answered ${code:-nothing}, not 200"; }
  done
fi
stop_worker
[ "$status" = 0 ] || fail "the generated worker exited with $status on SIGTERM"
if $probes; then
  pass "the generated worker joined $GROUP, answered GET /healthz and /readyz with 200, stopped cleanly"
else
  pass "the generated worker joined $GROUP and stopped cleanly"
fi
cd "$repo"

step "manifests against Kubernetes $KUBE_VERSIONS and KEDA $KEDA_VERSIONS schemas"
kube_args=()
for k in $KUBE_VERSIONS; do kube_args+=(--kube-version "$k"); done
expect_all=(--expect-kind Deployment --expect-kind ScaledObject --expect-kind HorizontalPodAutoscaler)
# Broken copies the check must fail on: a field KEDA does not have; an HPA of docs/deploy.md
# whose maxReplicas is a string.
broken=$out/broken-scaledobject.yaml
sed 's/^  scaleTargetRef:$/  scaleTargetRefs: {}\n  scaleTargetRef:/' "$crate/deploy/keda-scaledobject.yaml" >"$broken"
grep -q scaleTargetRefs "$broken" || fail "could not break the ScaledObject copy"
broken_docs=$out/broken-deploy.md
sed 's/^  maxReplicas: 20$/  maxReplicas: "20"/' docs/deploy.md >"$broken_docs"
grep -q 'maxReplicas: "20"' "$broken_docs" || fail "could not break the copy of docs/deploy.md"
for crds in "${crd_dirs[@]}"; do
  "$py" scripts/validate_manifests.py --self-test "${kube_args[@]}" --crds "$crds" --group "$GROUP" \
    "${expect_all[@]}" "$crate"/deploy/*.yaml || fail "the validator's self-test (KEDA CRDs in $crds)"
  "$py" scripts/validate_manifests.py "${kube_args[@]}" --crds "$crds" --group defaults-worker \
    "${expect_all[@]}" "$defaults"/deploy/*.yaml || fail "the manifests rendered with the defaults"
  "$py" scripts/validate_manifests.py "${kube_args[@]}" --crds "$crds" \
    --expect-kind ScaledObject --expect-kind HorizontalPodAutoscaler docs/deploy.md README.md ||
    fail "the manifests in docs/deploy.md and README.md"
  echo "-- the next two checks must fail --"
  if "$py" scripts/validate_manifests.py "${kube_args[@]}" --crds "$crds" --group "$GROUP" \
    "$crate/deploy/deployment.yaml" "$broken"; then
    fail "a ScaledObject with an unknown field passed validation"
  fi
  if "$py" scripts/validate_manifests.py "${kube_args[@]}" --crds "$crds" "$broken_docs"; then
    fail "docs/deploy.md with a broken HPA passed validation"
  fi
  pass "schemas and rules (KEDA CRDs from ${crds#"$work"/}); broken copies are rejected"
done

echo "template-test: $passed passed, 0 failed ($(($(date +%s) - start))s)"
