#!/usr/bin/env bash
# scripts/kafka.sh: real Kafka brokers (KRaft, combined mode, loopback only): one node or a small
# cluster, for tests and CI.
#
#   scripts/kafka.sh fetch  [VERSION]                         jars into target/kafka/<v>/libs (Maven)
#   scripts/kafka.sh start  [--version V] [--port P] [--dir DIR] [--keep-data] [--prop k=v]...
#                           [--feature name=level]...  (passed to StorageTool format)
#                           [--listener NAME:PROTOCOL:PORT[:ADVERTISED_PORT]]...  (more listeners)
#                           [--scram 'MECH=[name=U,password=P]']...  (StorageTool --add-scram)
#                           [--owner-pid PID] [--no-wait]
#                           [--node-id N --voters ID@HOST:PORT,... --cluster-id ID] [--replicas R]
#   scripts/kafka.sh stop   [--port P] [--dir DIR] [--kill]
#   scripts/kafka.sh restart --dir DIR [--no-wait]            start DIR's broker again, on its data
#   scripts/kafka.sh wait   [--port P] [--dir DIR]            until the broker started from DIR is ready
#   scripts/kafka.sh status [--port P] [--dir DIR]            exit 0 running, 3 not running
#   scripts/kafka.sh cluster start|stop|status [--nodes N] [--port P] [--dir DIR] [start's options]
#   scripts/kafka.sh run-tool [--version V] CLASS|ALIAS args...
#   scripts/kafka.sh classpath [--version V] [broker|tools]   print the class path
#
# Defaults: VERSION 4.4.0 (env KAFKA_VERSION), PORT 9092 (env KAFKA_PORT; the controller listens on
# PORT+1), DIR target/kafka/run-<port>. Broker log: DIR/broker.log (log4j2, INFO, noisy loggers at
# WARN); JVM stdout/stderr: DIR/broker.out. `start` prints KAFKA_BOOTSTRAP=127.0.0.1:<port> on success.
#
# Options of start: --owner-pid: the broker is killed (SIGKILL) when that process exits (tests pass their own pid, so
# no broker outlives its test). --no-wait: return once the JVM is launched (then `wait`).
# --replicas R: replication factor R of new topics and of the offsets, transaction and share-state
# topics, min.insync.replicas min(R, 2). --node-id, --voters (controller.quorum.voters, a static
# quorum; format without --standalone) and --cluster-id make the node part of a cluster. `restart`
# repeats the last start's arguments with --keep-data. `stop --kill`: SIGKILL, no clean shutdown.
#
# cluster: NODES (default 3) combined broker+controller nodes in one static quorum, replication
# factor min(NODES, 3), min ISR 2. Node i (from 1) listens on PORT+2(i-1) (its controller on the
# next port) and lives in DIR/node-i (default DIR target/kafka/cluster-<port>); stop or restart one
# node with `stop --port .. --dir DIR/node-i` and `restart --dir DIR/node-i`. `cluster start`
# prints KAFKA_BOOTSTRAP=127.0.0.1:<p1>,127.0.0.1:<p2>,...
#
# Env: KAFKA_HEAP_OPTS (default -Xmx768m -Xms256m), KAFKA_JVM_OPTS (GC flags), KAFKA_TOOL_OPTS,
# KAFKA_TOOLS_VERSION (force the kafka-tools version), KAFKA_START_TIMEOUT (s, default 90),
# KAFKA_LOG4J_VERSION (default 2.25.5).
#
# kafka-tools fallback: the package registry this project reaches does not serve every
# org.apache.kafka:kafka-tools release (4.4.0 and 4.2.2 were missing when this was written, while
# kafka_2.13 4.4.0 and 4.2.2 are there). `fetch V` then keeps the broker at V in libs/ and puts a
# complete, self-consistent older tool set (kafka_2.13 + kafka-tools of the newest earlier release
# found) in tools-libs/. Admin tools talk to the broker over the wire, so this is safe; but an old
# tool does not know configs or options newer than itself.
#
# Class names behind the shell scripts of the Kafka distribution (run-tool aliases in brackets):
#   kafka-topics.sh                    org.apache.kafka.tools.TopicCommand                     [topics]
#   kafka-configs.sh                   kafka.admin.ConfigCommand (kafka_2.13, up to 4.3);
#                                      org.apache.kafka.tools.ConfigCommand (kafka-tools, 4.4+) [configs]
#   kafka-features.sh                  org.apache.kafka.tools.FeatureCommand                   [features]
#   kafka-share-groups.sh              org.apache.kafka.tools.consumer.group.ShareGroupCommand [share-groups]
#   kafka-console-share-consumer.sh    org.apache.kafka.tools.consumer.ConsoleShareConsumer    [console-share-consumer]
#   kafka-console-producer.sh          org.apache.kafka.tools.ConsoleProducer                  [console-producer]
#   kafka-console-consumer.sh          org.apache.kafka.tools.consumer.ConsoleConsumer         [console-consumer]
#   kafka-producer-perf-test.sh        org.apache.kafka.tools.ProducerPerformance              [producer-perf]
#   kafka-share-consumer-perf-test.sh  org.apache.kafka.tools.ShareConsumerPerformance         [share-consumer-perf]
#   kafka-broker-api-versions.sh       org.apache.kafka.tools.BrokerApiVersionsCommand         [api-versions]
#   kafka-groups.sh                    org.apache.kafka.tools.GroupsCommand                    [groups]
#   kafka-get-offsets.sh               org.apache.kafka.tools.GetOffsetShell                   [get-offsets]
#   kafka-storage.sh                   kafka.tools.StorageTool                                 [storage]
#
# server.properties: exactly the combined-mode single node of shared/KAFKA.md, plus
#   auto.create.topics.enable=false  tests create their topics explicitly; a misspelt topic name must
#                                    fail (UNKNOWN_TOPIC_OR_PARTITION), not silently create a topic.
#   group.initial.rebalance.delay.ms=0  classic consumer groups only; saves 3 s in tests.
# Share-group settings (group.share.record.lock.duration.ms and its min/max, delivery count limit,
# ...) are left at the broker defaults. Add or override with --prop key=value (last one wins).
# Extra listeners (--listener SECURE:SASL_SSL:9094) go into listeners, advertised.listeners (on
# 127.0.0.1) and listener.security.protocol.map; their settings (keystores, JAAS, enabled
# mechanisms) come with --prop listener.name.secure.*=... The PLAINTEXT listener on PORT stays:
# the brokers talk over it and the readiness probe uses it. --scram users exist from the start
# (written into the metadata at format time; so not with --keep-data on formatted data).
# A listener advertised on another port (--listener PROXIED:PLAINTEXT:9095:9195) sends the
# clients that bootstrap through it to that port: where a test puts a TCP proxy in front of it.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
CACHE="$ROOT/target/kafka"
DEFAULT_VERSION="${KAFKA_VERSION:-4.4.0}"
DEFAULT_PORT="${KAFKA_PORT:-9092}"
LOG4J_VERSION="${KAFKA_LOG4J_VERSION:-2.25.5}"
# Known Kafka releases, newest first: candidates for the kafka-tools fallback (only releases older
# than the requested one are tried, at most MAX_TOOLS_TRIES of them).
KNOWN_RELEASES="4.4.0 4.3.1 4.3.0 4.2.2 4.2.1 4.2.0 4.1.2 4.1.1 4.1.0 4.0.2 4.0.1 4.0.0"
MAX_TOOLS_TRIES=4

die() { echo "kafka.sh: error: $*" >&2; exit 1; }
info() { echo "kafka.sh: $*" >&2; }

# ---------------------------------------------------------------------------------------------- fetch

write_pom() { # file, broker version (or empty), tools version (or empty)
  local file="$1" bv="$2" tv="$3"
  {
    cat <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/kafka.sh: only used to copy jars, never built -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>shareworker.local</groupId>
  <artifactId>kafka-jars</artifactId>
  <version>0</version>
  <packaging>pom</packaging>
  <dependencies>
EOF
    [[ -n "$bv" ]] && dep org.apache.kafka kafka_2.13 "$bv"
    [[ -n "$tv" ]] && dep org.apache.kafka kafka-tools "$tv"
    # Kafka 4.x logs through slf4j 1.7 and ships no binding in its poms: log4j2 with the slf4j-1 bridge.
    dep org.apache.logging.log4j log4j-api "$LOG4J_VERSION"
    dep org.apache.logging.log4j log4j-core "$LOG4J_VERSION"
    dep org.apache.logging.log4j log4j-slf4j-impl "$LOG4J_VERSION"
    cat <<EOF
  </dependencies>
</project>
EOF
  } >"$file"
}

dep() {
  printf '    <dependency><groupId>%s</groupId><artifactId>%s</artifactId><version>%s</version></dependency>\n' "$1" "$2" "$3"
}

mvn_copy() { # pom, output dir
  local pom="$1" out="$2" log
  log="$(dirname "$pom")/mvn.log"
  rm -rf "$out.tmp"
  if ! mvn -B -q -f "$pom" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$out.tmp" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    die "Maven failed to fetch the jars of $pom (full output: $log)"
  fi
  rm -rf "$out"
  mv "$out.tmp" "$out"
}

artifact_exists() { # groupId:artifactId:version
  mvn -B -q dependency:get -Dartifact="$1" -Dtransitive=false >/dev/null 2>&1
}

pick_tools_version() { # broker version -> kafka-tools version available from the registry
  local v="$1" cand tries=0
  if [[ -n "${KAFKA_TOOLS_VERSION:-}" ]]; then echo "$KAFKA_TOOLS_VERSION"; return; fi
  if artifact_exists "org.apache.kafka:kafka-tools:$v"; then echo "$v"; return; fi
  info "org.apache.kafka:kafka-tools:$v is not in the registry; looking for an older kafka-tools"
  for cand in $KNOWN_RELEASES; do
    [[ "$cand" == "$v" ]] && continue
    # only releases older than v
    [[ "$(printf '%s\n%s\n' "$cand" "$v" | sort -V | head -n1)" == "$cand" ]] || continue
    tries=$((tries + 1))
    ((tries > MAX_TOOLS_TRIES)) && break
    if artifact_exists "org.apache.kafka:kafka-tools:$cand"; then echo "$cand"; return; fi
  done
  die "no org.apache.kafka:kafka-tools release at or below $v found (set KAFKA_TOOLS_VERSION)"
}

write_log4j_configs() { # version dir
  local d="$1"
  # Broker: everything at INFO into ${sys:kafka.broker.log}; chatty loggers at WARN.
  cat >"$d/log4j2-broker.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/kafka.sh -->
<Configuration status="WARN" shutdownHook="disable">
  <Appenders>
    <File name="file" fileName="${sys:kafka.broker.log}" append="true" immediateFlush="true">
      <PatternLayout pattern="[%d{ISO8601}] %p %m (%c{1})%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="file"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="state.change.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <Logger name="org.apache.kafka.common.metrics" level="WARN"/>
    <Logger name="org.apache.kafka.storage.internals.log" level="WARN"/>
    <Logger name="kafka.log" level="WARN"/>
    <Logger name="kafka.cluster.Partition" level="WARN"/>
    <Logger name="kafka.server.ReplicaFetcherManager" level="WARN"/>
    <Logger name="org.apache.kafka.server.metrics" level="WARN"/>
  </Loggers>
</Configuration>
EOF
  # Tools: WARN and above to stderr, so tool output on stdout stays parseable.
  cat >"$d/log4j2-tools.xml" <<'EOF'
<?xml version="1.0" encoding="UTF-8"?>
<!-- generated by scripts/kafka.sh -->
<Configuration status="WARN">
  <Appenders>
    <Console name="stderr" target="SYSTEM_ERR"><PatternLayout pattern="[%d{ISO8601}] %p %m (%c{1})%n"/></Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="stderr"/></Root>
  </Loggers>
</Configuration>
EOF
}

cmd_fetch() {
  local v="${1:-$DEFAULT_VERSION}" d tv
  [[ "$v" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "fetch: VERSION must look like 4.4.0, got '$v'"
  d="$CACHE/$v"
  if [[ -f "$d/.fetched" && -d "$d/libs" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || die "mvn (Maven) is not installed"
  command -v java >/dev/null || die "java is not installed"
  mkdir -p "$d"
  info "fetching Kafka $v with Maven into $d (once; cached afterwards)"
  tv="$(pick_tools_version "$v")"
  rm -rf "$d/tools-libs" "$d/tools"
  if [[ "$tv" == "$v" ]]; then
    write_pom "$d/pom.xml" "$v" "$v"
    mvn_copy "$d/pom.xml" "$d/libs"
  else
    info "using kafka-tools $tv (with kafka_2.13 $tv) for the tools of Kafka $v"
    write_pom "$d/pom.xml" "$v" ""
    mvn_copy "$d/pom.xml" "$d/libs"
    mkdir -p "$d/tools"
    write_pom "$d/tools/pom.xml" "$tv" "$tv"
    mvn_copy "$d/tools/pom.xml" "$d/tools-libs"
  fi
  write_log4j_configs "$d"
  printf 'version=%s\ntools_version=%s\nlog4j_version=%s\n' "$v" "$tv" "$LOG4J_VERSION" >"$d/.fetched"
  info "Kafka $v ready in $d/libs (tools $tv)"
}

# ------------------------------------------------------------------------------------------ helpers

broker_cp() { echo "$CACHE/$1/libs/*"; }
tools_cp() {
  if [[ -d "$CACHE/$1/tools-libs" ]]; then echo "$CACHE/$1/tools-libs/*"; else echo "$CACHE/$1/libs/*"; fi
}
tools_version() { sed -n 's/^tools_version=//p' "$CACHE/$1/.fetched"; }

# version_ge A B: A >= B
version_ge() { [[ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -n1)" == "$2" ]]; }

resolve_alias() { # version, class-or-alias
  local v="$1" c="$2"
  case "$c" in
    topics) echo org.apache.kafka.tools.TopicCommand ;;
    configs)
      if version_ge "$(tools_version "$v")" 4.4.0; then echo org.apache.kafka.tools.ConfigCommand
      else echo kafka.admin.ConfigCommand; fi ;;
    features) echo org.apache.kafka.tools.FeatureCommand ;;
    share-groups) echo org.apache.kafka.tools.consumer.group.ShareGroupCommand ;;
    console-share-consumer) echo org.apache.kafka.tools.consumer.ConsoleShareConsumer ;;
    console-producer) echo org.apache.kafka.tools.ConsoleProducer ;;
    console-consumer) echo org.apache.kafka.tools.consumer.ConsoleConsumer ;;
    producer-perf) echo org.apache.kafka.tools.ProducerPerformance ;;
    share-consumer-perf) echo org.apache.kafka.tools.ShareConsumerPerformance ;;
    api-versions) echo org.apache.kafka.tools.BrokerApiVersionsCommand ;;
    groups) echo org.apache.kafka.tools.GroupsCommand ;;
    get-offsets) echo org.apache.kafka.tools.GetOffsetShell ;;
    storage) echo kafka.tools.StorageTool ;;
    *) echo "$c" ;;
  esac
}

# java for tools: quiet logging, small heap, serial GC (2-core machine).
tool_java() { # version, extra JVM flags..., --, class, args...
  local v="$1"; shift
  local -a jvm=()
  while [[ $# -gt 0 && "$1" != "--" ]]; do jvm+=("$1"); shift; done
  shift
  # shellcheck disable=SC2086 # KAFKA_TOOL_OPTS is a list of flags
  java ${KAFKA_TOOL_OPTS:--Xmx512m -XX:+UseSerialGC} "${jvm[@]}" \
    -Dlog4j2.configurationFile="$CACHE/$v/log4j2-tools.xml" \
    -cp "$(tools_cp "$v")" "$@"
}

broker_java() { # version, class, args... (foreground, short-lived: StorageTool)
  local v="$1"; shift
  java -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlog4j2.configurationFile="$CACHE/$v/log4j2-tools.xml" -cp "$(broker_cp "$v")" "$@"
}

pid_alive() { # pid file -> 0 if it names a live kafka.Kafka process
  local f="$1" pid
  [[ -f "$f" ]] || return 1
  pid="$(cat "$f")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q 'kafka\.Kafka' || return 1
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PORT="" DIR="" VERSION="" KEEP_DATA=0
NODE_ID=1 VOTERS="" CLUSTER_ID="" REPLICAS=1 NO_WAIT=0 OWNER_PID="" KILL=0 NODES=3
PROPS=()
FEATURES=()
LISTENERS=()
SCRAM=()
parse_common() { # sets the globals above; leaves the rest in REST
  REST=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --version) VERSION="${2:?--version needs a value}"; shift 2 ;;
      --port) PORT="${2:?--port needs a value}"; shift 2 ;;
      --dir) DIR="${2:?--dir needs a value}"; shift 2 ;;
      --keep-data) KEEP_DATA=1; shift ;;
      --prop) PROPS+=("${2:?--prop needs key=value}"); shift 2 ;;
      --feature) FEATURES+=(--feature "${2:?--feature needs name=level}"); shift 2 ;;
      --node-id) NODE_ID="${2:?--node-id needs a value}"; shift 2 ;;
      --voters) VOTERS="${2:?--voters needs id@host:port,...}"; shift 2 ;;
      --cluster-id) CLUSTER_ID="${2:?--cluster-id needs a value}"; shift 2 ;;
      --replicas) REPLICAS="${2:?--replicas needs a value}"; shift 2 ;;
      --listener) LISTENERS+=("${2:?--listener needs NAME:PROTOCOL:PORT[:ADVERTISED_PORT]}"); shift 2 ;;
      --scram) SCRAM+=(--add-scram "${2:?--scram needs MECHANISM=[name=...,password=...]}"); shift 2 ;;
      --no-wait) NO_WAIT=1; shift ;;
      --owner-pid) OWNER_PID="${2:?--owner-pid needs a pid}"; shift 2 ;;
      --kill) KILL=1; shift ;;
      --nodes) NODES="${2:?--nodes needs a value}"; shift 2 ;;
      *) REST+=("$1"); shift ;;
    esac
  done
  PORT="${PORT:-$DEFAULT_PORT}"
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "--port must be a number"
  [[ "$NODE_ID" =~ ^[0-9]+$ ]] || die "--node-id must be a number"
  [[ "$REPLICAS" =~ ^[1-9][0-9]*$ ]] || die "--replicas must be a number from 1"
  [[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a number from 1"
  [[ -z "$OWNER_PID" || "$OWNER_PID" =~ ^[0-9]+$ ]] || die "--owner-pid must be a pid"
  if [[ "${SUBCOMMAND:-}" == cluster ]]; then
    DIR="${DIR:-$CACHE/cluster-$PORT}"
  else
    DIR="${DIR:-$CACHE/run-$PORT}"
  fi
  mkdir -p "$DIR"
  DIR="$(cd "$DIR" && pwd)"
  # stop/status/...: the version the dir was last started with; start: --version or the default.
  if [[ -z "$VERSION" && "${SUBCOMMAND:-}" != start && -f "$DIR/version" ]]; then
    VERSION="$(cat "$DIR/version")"
  fi
  VERSION="${VERSION:-$DEFAULT_VERSION}"
}

# ------------------------------------------------------------------------------------------- start

# The listeners of server.properties: PLAINTEXT (clients, other brokers), CONTROLLER, and each
# --listener NAME:PROTOCOL:PORT[:ADVERTISED_PORT] on loopback. Checks them all first.
listener_lines() { # port, controller port
  local port="$1" cport="$2" l name proto lport aport
  local listeners="PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport"
  local advertised="$listeners"
  local map="CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
  for l in "${LISTENERS[@]+"${LISTENERS[@]}"}"; do
    IFS=: read -r name proto lport aport <<<"$l"
    [[ "$name" =~ ^[A-Z][A-Z0-9_]*$ && "$name" != PLAINTEXT && "$name" != CONTROLLER \
      && "$proto" =~ ^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$ \
      && "$lport" =~ ^[0-9]+$ && "${aport:-$lport}" =~ ^[0-9]+$ ]] ||
      die "--listener wants NAME:PROTOCOL:PORT[:ADVERTISED_PORT] (NAME in capitals, not PLAINTEXT or CONTROLLER), got '$l'"
    port_open "$lport" && die "listener port $lport is already in use by another process"
    listeners+=",$name://127.0.0.1:$lport"
    advertised+=",$name://127.0.0.1:${aport:-$lport}"
    map+=",$name:$proto"
  done
  printf 'listeners=%s\nadvertised.listeners=%s\nlistener.security.protocol.map=%s\n' \
    "$listeners" "$advertised" "$map"
}

cmd_start() {
  parse_common "$@"
  [[ ${#REST[@]} -eq 0 ]] || die "start: unknown arguments: ${REST[*]}"
  local cport=$((PORT + 1)) pidf="$DIR/kafka.pid" log="$DIR/broker.log" out="$DIR/broker.out"
  # A broker whose owner has exited is about to be killed by its watcher: kill it now and start
  # a new one, rather than hand it out.
  local owner
  owner="$(cat "$DIR/owner.pid" 2>/dev/null || true)"
  if pid_alive "$pidf" && [[ "$owner" =~ ^[0-9]+$ ]] && ! kill -0 "$owner" 2>/dev/null; then
    info "the broker in $DIR belongs to process $owner, which has exited; replacing it"
    kill -KILL "$(cat "$pidf")" 2>/dev/null || true
    local i
    for ((i = 0; i < 50; i++)); do pid_alive "$pidf" || break; sleep 0.1; done
    for ((i = 0; i < 50; i++)); do port_open "$PORT" || port_open "$((PORT + 1))" || break; sleep 0.1; done
  fi
  if pid_alive "$pidf"; then
    info "a broker is already running from $DIR (pid $(cat "$pidf"), version $(cat "$DIR/version" 2>/dev/null))"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
    return 0
  fi
  rm -f "$pidf" "$DIR/owner.pid"
  port_open "$PORT" && die "port $PORT is already in use by another process"
  port_open "$cport" && die "controller port $cport is already in use by another process"
  listener_lines "$PORT" "$cport" >/dev/null
  cmd_fetch "$VERSION"
  # For `restart`: the same arguments, minus the ones that only concern this start.
  local a
  : >"$DIR/start.args"
  for a in "$@"; do
    case "$a" in --keep-data | --no-wait) ;; *) printf '%s\n' "$a" >>"$DIR/start.args" ;; esac
  done

  local t0 t1
  t0="$(date +%s.%N)"
  local props="$DIR/server.properties" isr=$((REPLICAS < 2 ? REPLICAS : 2)) quorum
  if [[ -n "$VOTERS" ]]; then
    quorum="controller.quorum.voters=$VOTERS"
  else
    quorum="controller.quorum.bootstrap.servers=127.0.0.1:$cport"
  fi
  {
    echo "# generated by scripts/kafka.sh (Kafka $VERSION)"
    echo "process.roles=broker,controller"
    echo "node.id=$NODE_ID"
    echo "$quorum"
    listener_lines "$PORT" "$cport"
    echo "inter.broker.listener.name=PLAINTEXT"
    echo "controller.listener.names=CONTROLLER"
    echo "log.dirs=$DIR/data"
    echo "num.partitions=1"
    echo "default.replication.factor=$REPLICAS"
    echo "min.insync.replicas=$isr"
    echo "offsets.topic.replication.factor=$REPLICAS"
    echo "transaction.state.log.replication.factor=$REPLICAS"
    echo "transaction.state.log.min.isr=$isr"
    echo "share.coordinator.state.topic.replication.factor=$REPLICAS"
    echo "share.coordinator.state.topic.min.isr=$isr"
    echo "auto.create.topics.enable=false"
    echo "group.initial.rebalance.delay.ms=0"
  } >"$props"
  local p
  for p in "${PROPS[@]+"${PROPS[@]}"}"; do
    [[ "$p" == *=* ]] || die "--prop wants key=value, got '$p'"
    echo "$p" >>"$props"
  done
  echo "$VERSION" >"$DIR/version"

  if [[ $KEEP_DATA -eq 0 || ! -f "$DIR/data/meta.properties" ]]; then
    rm -rf "$DIR/data"
    local cid="$CLUSTER_ID"
    if [[ -z "$cid" ]]; then
      cid="$(broker_java "$VERSION" kafka.tools.StorageTool random-uuid | tail -n1)"
      [[ -n "$cid" ]] || die "StorageTool random-uuid printed nothing"
    fi
    # A single node formats its own one-voter quorum (--standalone); the nodes of a cluster
    # share the static voter list of --voters and one --cluster-id.
    local -a mode=(--standalone)
    [[ -n "$VOTERS" ]] && mode=()
    # Without --feature a fresh format gets the release's default feature levels
    # (share.version=1 on 4.2, 2 on 4.4; see scripts/KAFKA-FINDINGS.md).
    if ! broker_java "$VERSION" kafka.tools.StorageTool format "${mode[@]+"${mode[@]}"}" -t "$cid" \
        -c "$props" "${FEATURES[@]+"${FEATURES[@]}"}" "${SCRAM[@]+"${SCRAM[@]}"}" \
        >"$DIR/format.out" 2>&1; then
      cat "$DIR/format.out" >&2
      die "StorageTool format failed"
    fi
    echo "$cid" >"$DIR/cluster.id"
  fi

  : >"$log"
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS / KAFKA_JVM_OPTS are lists of flags
  setsid nohup java ${KAFKA_HEAP_OPTS:--Xmx768m -Xms256m} \
    ${KAFKA_JVM_OPTS:--XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -XX:+ExitOnOutOfMemoryError} \
    -Djava.awt.headless=true -Dkafka.broker.log="$log" \
    -Dlog4j2.configurationFile="$CACHE/$VERSION/log4j2-broker.xml" \
    -cp "$(broker_cp "$VERSION")" kafka.Kafka "$props" </dev/null >"$out" 2>&1 &
  local pid=$!
  echo "$pid" >"$pidf"
  if [[ -n "$OWNER_PID" ]]; then
    echo "$OWNER_PID" >"$DIR/owner.pid"
    watch_owner "$OWNER_PID" "$pid"
  fi
  if [[ $NO_WAIT -eq 1 ]]; then
    info "Kafka $VERSION node $NODE_ID launched on 127.0.0.1:$PORT (pid $pid, dir $DIR); not waiting"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
    return 0
  fi
  wait_ready
  t1="$(date +%s.%N)"
  info "Kafka $VERSION ready on 127.0.0.1:$PORT (pid $pid, dir $DIR) in $(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.1f", b-a}') s"
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
}

# watch_owner OWNER BROKER: SIGKILL the broker when the owner process (a test) exits, however it
# exits, so a test's brokers never outlive it. Only that pid, and only while it is kafka.Kafka.
watch_owner() {
  # shellcheck disable=SC2016 # $1 and $2 are the inner script's arguments
  setsid nohup bash -c '
    while kill -0 "$1" 2>/dev/null; do
      kill -0 "$2" 2>/dev/null || exit 0
      sleep 1
    done
    if tr "\0" " " <"/proc/$2/cmdline" 2>/dev/null | grep -q "kafka\.Kafka"; then
      kill -KILL "$2" 2>/dev/null
    fi' kafka-owner-watch "$1" "$2" </dev/null >/dev/null 2>&1 &
}

# wait_ready: the broker started from DIR (its pid file) accepts connections on PORT AND an admin
# metadata request (list topics) answers; stops the broker and fails otherwise.
wait_ready() {
  local pidf="$DIR/kafka.pid" log="$DIR/broker.log" out="$DIR/broker.out" pid
  pid="$(cat "$pidf" 2>/dev/null)" || die "no broker was started from $DIR"
  printf 'request.timeout.ms=5000\ndefault.api.timeout.ms=8000\n' >"$DIR/probe.properties"
  local timeout="${KAFKA_START_TIMEOUT:-90}" deadline ready=0
  deadline=$(( $(date +%s) + timeout ))
  while (( $(date +%s) < deadline )); do
    if ! kill -0 "$pid" 2>/dev/null; then
      break
    fi
    if port_open "$PORT" && grep -q 'Kafka Server started' "$log" 2>/dev/null; then
      if tool_java "$VERSION" -XX:TieredStopAtLevel=1 -- org.apache.kafka.tools.TopicCommand \
          --bootstrap-server "127.0.0.1:$PORT" --command-config "$DIR/probe.properties" --list \
          >/dev/null 2>"$DIR/probe.err"; then
        ready=1
        break
      fi
    fi
    sleep 0.5
  done
  if [[ $ready -ne 1 ]]; then
    if kill -0 "$pid" 2>/dev/null; then
      info "broker not ready after ${timeout}s; stopping it"
      kill -TERM "$pid" 2>/dev/null || true
      local i
      for ((i = 0; i < 100; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -KILL "$pid" 2>/dev/null || true
    else
      info "broker process $pid exited"
    fi
    rm -f "$pidf"
    echo "----- last 100 lines of $log -----" >&2
    tail -n 100 "$log" >&2 || true
    echo "----- $out -----" >&2
    tail -n 30 "$out" >&2 || true
    [[ -s "$DIR/probe.err" ]] && { echo "----- readiness probe -----" >&2; tail -n 10 "$DIR/probe.err" >&2; }
    die "Kafka $VERSION did not become ready on 127.0.0.1:$PORT"
  fi
}

cmd_wait() {
  parse_common "$@"
  [[ ${#REST[@]} -eq 0 ]] || die "wait: unknown arguments: ${REST[*]}"
  wait_ready
  echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
}

# restart --dir DIR [--no-wait]: starts the broker of DIR again on its data, with the arguments
# it was last started with.
cmd_restart() {
  local dir="" a
  local -a extra=()
  while [[ $# -gt 0 ]]; do
    case "$1" in
      --dir) dir="${2:?--dir needs a value}"; shift 2 ;;
      --no-wait) extra+=(--no-wait); shift ;;
      *) die "restart: unknown argument $1" ;;
    esac
  done
  [[ -n "$dir" && -f "$dir/start.args" ]] ||
    die "restart: --dir must name a directory a broker was started from"
  local -a args=()
  while IFS= read -r a; do args+=("$a"); done <"$dir/start.args"
  SUBCOMMAND=start
  cmd_start "${args[@]}" --keep-data "${extra[@]+"${extra[@]}"}"
}

# -------------------------------------------------------------------------------------------- stop

cmd_stop() {
  parse_common "$@"
  [[ ${#REST[@]} -eq 0 ]] || die "stop: unknown arguments: ${REST[*]}"
  local pidf="$DIR/kafka.pid" pid i
  if ! pid_alive "$pidf"; then
    rm -f "$pidf"
    info "no broker running from $DIR"
    return 0
  fi
  pid="$(cat "$pidf")"
  if [[ $KILL -eq 1 ]]; then
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    info "broker $pid killed (SIGKILL)"
    rm -f "$pidf"
    return 0
  fi
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < 300; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    info "broker $pid still running 30 s after SIGTERM; sending SIGKILL"
    kill -KILL "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  else
    info "broker $pid stopped after $(awk -v n="$i" 'BEGIN{printf "%.1f", n/10}') s"
  fi
  rm -f "$pidf"
}

# ----------------------------------------------------------------------------------------- cluster

# cluster start|stop|status: NODES combined broker+controller nodes with a static quorum of NODES
# voters. Node i (from 1) listens on PORT+2(i-1), its controller on the port after, and lives in
# DIR/node-i. `start` passes --version, --prop, --feature, --scram, --owner-pid and --keep-data
# on to every node, and sets --replicas to NODES (at most 3).
cmd_cluster() {
  local sub="${1:-}"
  [[ $# -gt 0 ]] && shift
  parse_common "$@"
  [[ ${#REST[@]} -eq 0 ]] || die "cluster $sub: unknown arguments: ${REST[*]}"
  local i voters="" bootstrap="" node_port rc=0 self="${BASH_SOURCE[0]}"
  for ((i = 1; i <= NODES; i++)); do
    node_port=$((PORT + 2 * (i - 1)))
    voters+="${voters:+,}$i@127.0.0.1:$((node_port + 1))"
    bootstrap+="${bootstrap:+,}127.0.0.1:$node_port"
  done
  case "$sub" in
    start)
      local cid replicas=$((NODES < 3 ? NODES : 3)) p
      cmd_fetch "$VERSION"
      cid="$(broker_java "$VERSION" kafka.tools.StorageTool random-uuid | tail -n1)"
      [[ -n "$cid" ]] || die "StorageTool random-uuid printed nothing"
      echo "$VERSION" >"$DIR/version"
      local -a common=(--version "$VERSION" --voters "$voters" --cluster-id "$cid"
        --replicas "$replicas" --no-wait)
      [[ $KEEP_DATA -eq 1 ]] && common+=(--keep-data)
      [[ -n "$OWNER_PID" ]] && common+=(--owner-pid "$OWNER_PID")
      for p in "${PROPS[@]+"${PROPS[@]}"}"; do common+=(--prop "$p"); done
      common+=("${FEATURES[@]+"${FEATURES[@]}"}")
      common+=("${SCRAM[@]+"${SCRAM[@]}"}")
      [[ ${#LISTENERS[@]} -eq 0 ]] || die "cluster start: --listener is not supported (ports are per node)"
      # Every node first (the quorum needs a majority of them), then wait for each.
      for ((i = 1; i <= NODES; i++)); do
        "$self" start --node-id "$i" --port "$((PORT + 2 * (i - 1)))" --dir "$DIR/node-$i" \
          "${common[@]}" >/dev/null || { rc=1; break; }
      done
      if [[ $rc -eq 0 ]]; then
        for ((i = 1; i <= NODES; i++)); do
          "$self" wait --port "$((PORT + 2 * (i - 1)))" --dir "$DIR/node-$i" >/dev/null ||
            { rc=1; break; }
        done
      fi
      if [[ $rc -ne 0 ]]; then
        for ((i = 1; i <= NODES; i++)); do
          "$self" stop --port "$((PORT + 2 * (i - 1)))" --dir "$DIR/node-$i" --kill || true
        done
        die "the $NODES-node cluster in $DIR did not start"
      fi
      info "Kafka $VERSION cluster of $NODES nodes ready on $bootstrap (dir $DIR)"
      echo "KAFKA_BOOTSTRAP=$bootstrap"
      ;;
    stop)
      local -a how=() p
      [[ $KILL -eq 1 ]] && how=(--kill)
      # All at once: the last node alone has no quorum left for a controlled shutdown.
      local -a pids=()
      for ((i = 1; i <= NODES; i++)); do
        "$self" stop --port "$((PORT + 2 * (i - 1)))" --dir "$DIR/node-$i" \
          "${how[@]+"${how[@]}"}" &
        pids+=($!)
      done
      for p in "${pids[@]}"; do wait "$p" || rc=1; done
      return "$rc"
      ;;
    status)
      local line
      for ((i = 1; i <= NODES; i++)); do
        line="$("$self" status --port "$((PORT + 2 * (i - 1)))" --dir "$DIR/node-$i")" || rc=3
        printf 'node %s: %s\n' "$i" "${line%%$'\n'*}"
      done
      return "$rc"
      ;;
    *) die "cluster: start, stop or status" ;;
  esac
}

cmd_status() {
  parse_common "$@"
  local pidf="$DIR/kafka.pid"
  if pid_alive "$pidf"; then
    echo "running pid=$(cat "$pidf") version=$VERSION dir=$DIR"
    echo "KAFKA_BOOTSTRAP=127.0.0.1:$PORT"
  else
    echo "not running (dir=$DIR)"
    return 3
  fi
}

cmd_run_tool() {
  local v="$DEFAULT_VERSION"
  if [[ "${1:-}" == "--version" ]]; then v="${2:?--version needs a value}"; shift 2; fi
  [[ $# -ge 1 ]] || die "run-tool: CLASS (or alias) required"
  cmd_fetch "$v"
  local cls
  cls="$(resolve_alias "$v" "$1")"
  shift
  tool_java "$v" -- "$cls" "$@"
}

cmd_classpath() {
  local v="$DEFAULT_VERSION"
  if [[ "${1:-}" == "--version" ]]; then v="${2:?--version needs a value}"; shift 2; fi
  cmd_fetch "$v"
  case "${1:-broker}" in
    broker) broker_cp "$v" ;;
    tools) tools_cp "$v" ;;
    *) die "classpath: broker or tools" ;;
  esac
}

usage() { sed -n '2,39p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

main() {
  local sub="${1:-}"
  SUBCOMMAND="$sub"
  [[ $# -gt 0 ]] && shift
  case "$sub" in
    fetch) cmd_fetch "$@" ;;
    start) cmd_start "$@" ;;
    stop) cmd_stop "$@" ;;
    restart) cmd_restart "$@" ;;
    wait) cmd_wait "$@" ;;
    cluster) cmd_cluster "$@" ;;
    status) cmd_status "$@" ;;
    run-tool) cmd_run_tool "$@" ;;
    classpath) cmd_classpath "$@" ;;
    -h | --help | help) usage ;;
    *) usage >&2; exit 2 ;;
  esac
}

main "$@"
