#!/usr/bin/env bash
# kafka.sh: a real Apache Kafka broker for running and testing the fleet on
# one machine: one JVM, combined broker and controller (KRaft), loopback
# only, its jars fetched once by the pinned Maven project tools/kafka.
#
#   scripts/kafka.sh start   DIR   fresh storage, start, wait, topics, print env
#   scripts/kafka.sh stop    DIR   SIGTERM, bounded wait, SIGKILL; no-op when stopped
#   scripts/kafka.sh restart DIR   stop if running, start again on the same data and ports
#   scripts/kafka.sh status  DIR   exit 0 running, 3 stopped or not created
#   scripts/kafka.sh env     DIR   print export AS_KAFKA_BOOTSTRAP (running broker)
#   scripts/kafka.sh fetch   DIR   only fetch the jars (DIR is ignored)
#
# Layout: DIR/data (log.dirs: topics and the KRaft metadata log; wiped and
# formatted with a fixed cluster id on every start, kept by restart),
# DIR/server.properties,
# DIR/log/server.log (the broker's log), DIR/kafka.pid, DIR/bootstrap.
# Ports: two free loopback ports picked on every start (the client listener
# and the controller's). Readiness is the broker's own "Kafka Server
# started" line: an open port only says the socket is bound, not that the
# broker has caught up with its metadata and can lead partitions. Then
# as-topics creates proto/topics.tsv's topics (AS_KAFKA_TOPICS_FILE, empty
# for none) with their partition counts and waits for their leaders.
#
# Jars: build/kafka/lib (AS_KAFKA_LIB), filled by Maven from ~/.m2 or the
# registry when tools/kafka/pom.xml changed since the last fetch, never
# otherwise. Java: AS_JAVA or java on PATH (Debian's OpenJDK 17, see
# scripts/deps.sh). Heap: AS_KAFKA_HEAP (default -Xms512m -Xmx512m).
# JIT: C1 only (AS_KAFKA_JIT, default -XX:TieredStopAtLevel=1; empty for
# the JVM's tiered default). On two cores a fresh broker's C2 compilations
# compete with the fleet for the first minute: at 1,000 single-message
# produce requests/s its p99 was 1,132 ms for the first 10 s and 11 ms once
# warm; C1 alone gave 47 ms from the start and 14 ms warm, with a third
# less broker CPU. Tests and benchmarks start a fresh broker every time.
#
# No JVM outlives a failed or interrupted start: a trap kills the one this
# script started unless start completed. The broker runs in a session of
# its own, so Ctrl-C to a caller's terminal reaches it only through stop.
set -euo pipefail

readonly CLUSTER_ID=aSrGbJm2QFuxQ7kTQzXq1w # fixed: same as docker-compose's
readonly NODE_ID=1
readonly READY_LINE='Kafka Server started'
readonly START_TIMEOUT_S=${AS_KAFKA_START_TIMEOUT:-90}
readonly STOP_TIMEOUT_S=${AS_KAFKA_STOP_TIMEOUT:-30}
ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
readonly ROOT
readonly POM=$ROOT/tools/kafka/pom.xml
readonly LOG4J_CONF=$ROOT/tools/kafka/log4j2.properties

die() {
	printf 'kafka.sh: %s\n' "$1" >&2
	[[ $# -lt 2 ]] || printf 'hint: %s\n' "$2" >&2
	exit 1
}

log() { printf 'kafka.sh: %s\n' "$*" >&2; }

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# ---- the jars -----------------------------------------------------------

# Absolute: Maven resolves a relative output directory against the POM's.
lib_dir() { realpath -m -- "${AS_KAFKA_LIB:-$ROOT/build/kafka/lib}"; }

# The stamp records the POM the jars came from: a changed pin refetches,
# an unchanged one never asks Maven again.
pom_hash() { sha256sum -- "$POM" | cut -c1-64; }

lib_current() {
	[[ -f $1/.pom-sha256 && $(cat -- "$1/.pom-sha256") == "$(pom_hash)" ]]
}

# Copies into a temporary directory and renames it into place, so an
# interrupted fetch never leaves a half-filled lib that looks complete.
# Two starts on a fresh clone (parallel tests) fetch one after the other:
# the second finds the first's jars.
cmd_fetch() {
	local lib
	lib=$(lib_dir)
	lib_current "$lib" && return 0
	command -v mvn >/dev/null || die "no mvn to fetch the broker's jars" "scripts/deps.sh (apt-get install -y maven)"
	mkdir -p -- "$(dirname -- "$lib")"
	(
		flock -w 600 8 || die "another fetch holds $lib.lock"
		lib_current "$lib" && exit 0
		tmp=$(mktemp -d "$lib.tmp.XXXXXX")
		log "fetching the broker's jars (tools/kafka/pom.xml) into $lib"
		if ! mvn -q -B -f "$POM" dependency:copy-dependencies -Das.kafka.lib="$tmp" >"$tmp.log" 2>&1; then
			rm -rf -- "$tmp"
			die "mvn could not fetch the broker's jars" "see $tmp.log"
		fi
		rm -f -- "$tmp.log"
		pom_hash >"$tmp/.pom-sha256"
		rm -rf -- "$lib"
		mv -T -- "$tmp" "$lib"
	) 8>"$lib.lock"
}

# ---- ports and configuration -------------------------------------------

port_in_use() { ss -Htan "sport = :$1" 2>/dev/null | grep -q .; }

# A free port in 20000-60000, not the one in $1 (the other listener).
pick_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		[[ $p != "${1:-}" ]] && ! port_in_use "$p" && {
			printf '%s\n' "$p"
			return
		}
		: "$i"
	done
	die "no free port found in 20000-60000"
}

# One partition and one replica for every internal topic (one broker), no
# wait for more members before the first rebalance (tests join groups all
# the time), and topics only from as-topics: a typo in a topic name must
# fail, not create a 1-partition topic. Records up to 16 MiB, the largest
# AS_MAX_MESSAGE_BYTES a worker takes (Kafka's default is about 1 MiB): a
# record above a worker's limit must reach the worker, which dead-letters
# it as payload_too_large, as on the mock, which takes any size.
write_conf() {
	local port=$1 cport=$2
	cat >"$DIR/server.properties" <<-EOF
		# Written by scripts/kafka.sh on every start.
		process.roles=broker,controller
		node.id=$NODE_ID
		controller.quorum.voters=$NODE_ID@127.0.0.1:$cport
		listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$cport
		advertised.listeners=PLAINTEXT://127.0.0.1:$port
		controller.listener.names=CONTROLLER
		inter.broker.listener.name=PLAINTEXT
		listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
		log.dirs=$DIR/data
		auto.create.topics.enable=false
		num.partitions=1
		default.replication.factor=1
		min.insync.replicas=1
		offsets.topic.replication.factor=1
		offsets.topic.num.partitions=1
		transaction.state.log.replication.factor=1
		transaction.state.log.min.isr=1
		transaction.state.log.num.partitions=1
		share.coordinator.state.topic.replication.factor=1
		share.coordinator.state.topic.min.isr=1
		share.coordinator.state.topic.num.partitions=1
		group.initial.rebalance.delay.ms=0
		num.recovery.threads.per.data.dir=1
		message.max.bytes=16777216
	EOF
}

# ---- the running broker ------------------------------------------------

read_pid() { cat -- "$DIR/kafka.pid" 2>/dev/null || true; }

# Running = the pid file names a live JVM started with this DIR's
# configuration: a stale file whose pid was reused by another process
# must never get that process signalled.
is_ours() {
	local pid=$1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "kafka.Kafka $DIR/server.properties"
}

is_running() { is_ours "$(read_pid)"; }

print_env() {
	printf 'export AS_KAFKA_BOOTSTRAP=%q\n' "$(cat -- "$DIR/bootstrap")"
}

# SIGTERM: the broker shuts down in order (a few seconds); SIGKILL after
# STOP_TIMEOUT_S, and wait until the process is really gone either way.
kill_broker() {
	local pid=$1 i
	kill -TERM "$pid" 2>/dev/null || return 0
	for i in $(seq 1 $((STOP_TIMEOUT_S * 10))); do
		is_ours "$pid" || return 0
		sleep 0.1
		: "$i"
	done
	log "broker pid $pid still up after ${STOP_TIMEOUT_S}s: SIGKILL"
	kill -KILL "$pid" 2>/dev/null || true
	while is_ours "$pid"; do sleep 0.1; done
}

# Set while start has a JVM it has not handed over yet.
STARTING_PID=
on_exit() {
	local rc=$?
	if [[ -n $STARTING_PID ]]; then
		log "start did not complete: stopping the broker (pid $STARTING_PID)"
		kill_broker "$STARTING_PID"
		rm -f -- "$DIR/kafka.pid"
	fi
	exit "$rc"
}

java_bin() {
	local j=${AS_JAVA:-java}
	command -v "$j" >/dev/null || die "no java to run the broker" "scripts/deps.sh (apt-get install -y default-jre-headless)"
	printf '%s\n' "$j"
}

format_storage() {
	local java=$1 lib=$2
	rm -rf -- "$DIR/data"
	mkdir -p -- "$DIR/data" "$DIR/log"
	# A one-shot JVM: C1 only and the serial collector start it faster.
	(cd / && "$java" -Xmx256m -XX:TieredStopAtLevel=1 -XX:+UseSerialGC \
		-Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$lib/*" \
		kafka.tools.StorageTool format -t "$CLUSTER_ID" -c "$DIR/server.properties") \
		>"$DIR/log/format.log" 2>&1 9>&- ||
		die "formatting the storage failed" "see $DIR/log/format.log"
}

# The JVM in a session of its own (setsid execs in place here, so $! is
# the JVM's pid), from / so a cwd that is removed later does not matter,
# without our lock (fd 9).
launch() {
	local java=$1 lib=$2
	# shellcheck disable=SC2086 # AS_KAFKA_HEAP and AS_KAFKA_JIT are lists of JVM options
	(cd / && exec setsid "$java" ${AS_KAFKA_HEAP:--Xms512m -Xmx512m} ${AS_KAFKA_JIT--XX:TieredStopAtLevel=1} -XX:+UseG1GC \
		-XX:MaxGCPauseMillis=20 -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
		-Dlog4j2.configurationFile="$LOG4J_CONF" -cp "$lib/*" \
		kafka.Kafka "$DIR/server.properties") >"$DIR/log/server.log" 2>&1 </dev/null 9>&- &
	STARTING_PID=$!
	printf '%s\n' "$STARTING_PID" >"$DIR/kafka.pid"
}

wait_ready() {
	local i
	for i in $(seq 1 $((START_TIMEOUT_S * 10))); do
		grep -qF -- "$READY_LINE" "$DIR/log/server.log" 2>/dev/null && return 0
		kill -0 "$STARTING_PID" 2>/dev/null ||
			die "the broker exited during start" "see $DIR/log/server.log"
		sleep 0.1
		: "$i"
	done
	die "the broker was not ready after ${START_TIMEOUT_S}s" "see $DIR/log/server.log"
}

create_topics() {
	local file=${AS_KAFKA_TOPICS_FILE-$ROOT/proto/topics.tsv}
	local bin=${AS_TOPICS_BIN:-${AS_BIN_DIR:-$ROOT/build/bin}/as-topics}
	[[ -n $file ]] || return 0
	[[ -x $bin ]] || die "no $bin to create the topics" "make build"
	"$bin" --bootstrap "$(cat -- "$DIR/bootstrap")" --topics "$file" \
		>"$DIR/log/topics.out" 2>"$DIR/log/topics.log" ||
		die "as-topics failed: $(head -n 3 "$DIR/log/topics.out" | tr '\n' ' ')" "see $DIR/log/topics.log"
}

# ---- commands ------------------------------------------------------------

cmd_start() {
	local java lib port cport t0 t1
	if is_running; then
		log "already running at $(cat -- "$DIR/bootstrap"), pid $(read_pid)"
		print_env
		return 0
	fi
	java=$(java_bin)
	cmd_fetch
	lib=$(lib_dir)
	port=$(pick_port)
	cport=$(pick_port "$port")
	write_conf "$port" "$cport"
	printf '127.0.0.1:%s\n' "$port" >"$DIR/bootstrap"
	format_storage "$java" "$lib"
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	t0=$(date +%s%N)
	launch "$java" "$lib"
	wait_ready
	t1=$(date +%s%N)
	create_topics
	STARTING_PID=
	log "ready at 127.0.0.1:$port (pid $(read_pid); JVM ready in $(((t1 - t0) / 1000000)) ms, topics in $((($(date +%s%N) - t1) / 1000000)) ms)"
	print_env
}

# The broker as after a crash or a maintenance stop: same storage, same
# ports (so every client's bootstrap still holds), no format; as-topics
# then verifies the topics it finds.
cmd_restart() {
	local java lib t0 t1
	[[ -f $DIR/server.properties && -d $DIR/data && -f $DIR/bootstrap ]] ||
		die "no broker data in $DIR to restart" "run: scripts/kafka.sh start $DIR"
	is_running && kill_broker "$(read_pid)"
	java=$(java_bin)
	cmd_fetch
	lib=$(lib_dir)
	trap on_exit EXIT
	trap 'exit 130' INT
	trap 'exit 143' TERM
	# The log before the stop stays beside the new one (the readiness line
	# must be the new run's).
	mv -f -- "$DIR/log/server.log" "$DIR/log/server.log.1" 2>/dev/null || true
	t0=$(date +%s%N)
	launch "$java" "$lib"
	wait_ready
	t1=$(date +%s%N)
	create_topics
	STARTING_PID=
	log "restarted at $(cat -- "$DIR/bootstrap") on the same data (pid $(read_pid); JVM ready in $(((t1 - t0) / 1000000)) ms)"
	print_env
}

cmd_stop() {
	local pid
	pid=$(read_pid)
	if ! is_ours "$pid"; then
		rm -f -- "$DIR/kafka.pid"
		return 0
	fi
	kill_broker "$pid"
	rm -f -- "$DIR/kafka.pid"
	log "stopped"
}

cmd_status() {
	if is_running; then
		printf 'running: pid %s, bootstrap %s\n' "$(read_pid)" "$(cat -- "$DIR/bootstrap")"
		return 0
	fi
	printf 'stopped: %s\n' "$DIR"
	exit 3
}

cmd_env() {
	is_running || die "no broker running in $DIR" "run: scripts/kafka.sh start $DIR"
	print_env
}

main() {
	[[ $# -eq 2 ]] || usage
	local cmd=$1
	case $cmd in start | stop | restart | status | env | fetch) ;; *) usage ;; esac
	[[ $cmd != fetch ]] || {
		cmd_fetch
		return
	}
	if [[ ! -d $2 ]]; then
		case $cmd in
		start) mkdir -p -- "$2" ;;
		stop) return 0 ;;
		status) printf 'stopped: %s\n' "$2" && exit 3 ;;
		env | restart) die "no broker in $2" "run: scripts/kafka.sh start $2" ;;
		esac
	fi
	DIR=$(cd -- "$2" && pwd -P)
	# Two starts at once on one DIR would race on its storage: serialise.
	exec 9>"$DIR/.kafka.lock"
	flock -w 120 9 || die "another kafka.sh holds $DIR/.kafka.lock"
	"cmd_$cmd"
}

main "$@"
