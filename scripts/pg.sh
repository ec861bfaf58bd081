#!/usr/bin/env bash
# pg.sh: a private PostgreSQL cluster for running and testing the fleet on
# one machine, built from Debian's server binaries (initdb, pg_ctl).
#
#   scripts/pg.sh start   DIR   init on first use, start, wait, print env
#   scripts/pg.sh stop    DIR   fast shutdown; no-op when not running
#   scripts/pg.sh status  DIR   exit 0 running, 3 stopped or not created
#   scripts/pg.sh env     DIR   print export PGHOST/PGPORT/PGUSER/PGDATABASE
#   scripts/pg.sh destroy DIR   stop, then delete the cluster and its files
#   scripts/pg.sh prepare DIR DB  create database DB (if new) and apply the
#                                 fleet's roles and grants there
#
# Layout: DIR/data (PGDATA), DIR/sock (the only listener: a Unix socket,
# listen_addresses=''), DIR/log/postgresql.log, DIR/secrets. Durability is production's:
# fsync and synchronous_commit stay on (only initdb runs with --no-sync).
# The port is picked once, at creation, among free ones, and kept.
#
# As root, the server runs as the `postgres` OS user (PostgreSQL refuses to
# run as root). If that user cannot traverse DIR (a clone under /root or in
# a 0700 `mktemp -d`), or DIR is so deep that the socket path would exceed
# the 107-byte sun_path limit, the cluster lives in a postgres-owned
# /var/tmp/as-pg-<hash of DIR> and DIR/data, DIR/sock, DIR/log are symlinks
# to it. Run `destroy` before deleting DIR, or that directory is left behind.
#
# Least privilege (deploy/sql/roles.sql, the same script compose and
# Kubernetes run): every role authenticates with scram-sha-256 (pg_hba.conf
# has no trust line), its password generated at creation into
# DIR/secrets/<role>.password and the libpq password file DIR/secrets/pgpass,
# readable by the user who ran `start` only (root as a rule). The socket
# directory is 0750 and the server user's: nobody else reaches the socket.
# `start` prints PGUSER=postgres (the admin, a superuser, for tests'
# assertions and this script) and PGPASSFILE; the workers connect as
# as_<service>, migrations as aftersales_owner, over the same socket.
set -euo pipefail

readonly DB=aftersales
readonly ADMIN=postgres      # bootstrap superuser created by initdb
readonly ROLES_SQL=$(cd "$(dirname "$0")/.." && pwd -P)/deploy/sql/roles.sql
# Every login role roles.sql makes, with the variable that carries its password.
readonly LOGIN_ROLES="postgres aftersales_owner as_intake as_review as_inspection as_logistics as_notification as_probe"
readonly RELOCATE_BASE=/var/tmp
readonly SUN_PATH_MAX=107    # sizeof(sockaddr_un.sun_path) - 1 on Linux

die() {
	printf 'pg.sh: %s\n' "$1" >&2
	[[ $# -lt 2 ]] || printf 'hint: %s\n' "$2" >&2
	exit 1
}

log() { printf 'pg.sh: %s\n' "$*" >&2; }

usage() {
	sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

# Newest installed server binaries, preferring 15 (what the design targets).
find_bindir() {
	local d
	if [[ -n ${AS_PG_BINDIR:-} ]]; then
		printf '%s\n' "$AS_PG_BINDIR"
		return
	fi
	if [[ -x /usr/lib/postgresql/15/bin/pg_ctl ]]; then
		printf '%s\n' /usr/lib/postgresql/15/bin
		return
	fi
	d=$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null |
		sort -V | tail -n 1)
	[[ -n $d && -x $d/pg_ctl ]] ||
		die "no PostgreSQL server binaries under /usr/lib/postgresql" \
			"apt-get install -y postgresql"
	printf '%s\n' "$d"
}

# Runs a command as the server's OS user, from / so a cwd that user cannot
# enter (/root) does not make initdb or pg_ctl fail. fd 9 (our lock) is
# closed: a postmaster inheriting it would hold the lock for its lifetime.
as_pg() {
	if [[ $RUN_AS_ROOT == 1 ]]; then
		(cd / && runuser -u postgres -- "$@") 9>&-
	else
		(cd / && "$@") 9>&-
	fi
}

# Creates a directory the server user owns (chown only when we are root).
mkdir_pg() {
	local dir=$1 mode=$2
	mkdir -p -- "$dir"
	chmod "$mode" -- "$dir"
	[[ $RUN_AS_ROOT == 0 ]] || chown postgres:postgres -- "$dir"
}

# ---- where the cluster lives ------------------------------------------

# Decided once at creation: DIR itself, unless the server user cannot reach
# it or the socket path would be too long for a Unix socket.
choose_root() {
	local sock_probe="$DIR/sock/.s.PGSQL.65535"
	if ((${#sock_probe} <= SUN_PATH_MAX)) && as_pg test -x "$DIR" 2>/dev/null; then
		printf '%s\n' "$DIR"
		return
	fi
	printf '%s/as-pg-%s\n' "$RELOCATE_BASE" \
		"$(printf '%s' "$DIR" | sha256sum | cut -c1-16)"
}

# /var/tmp is world-writable: a pre-existing directory with our name must be
# a real directory of the server user, or someone else could own our data.
check_relocated_root() {
	local root=$1 owner
	[[ -e $root || -L $root ]] || return 0
	[[ -d $root && ! -L $root ]] || die "$root exists and is not a directory"
	owner=$(stat -c %U -- "$root")
	[[ $owner == "$PG_OS_USER" ]] ||
		die "$root is owned by $owner, not $PG_OS_USER" "remove it, then retry"
}

make_relocated_root() {
	local root=$1 part
	check_relocated_root "$root"
	mkdir_pg "$root" 0755
	printf '%s\n' "$DIR" >"$root/source-dir"
	for part in data sock log; do
		mkdir_pg "$root/$part" 0700
		ln -sfn -- "$root/$part" "$DIR/$part"
	done
	chmod 0750 -- "$root/sock"
	chmod 0755 -- "$root/log"
	log "cluster placed in $root: $DIR is out of $PG_OS_USER's reach or too deep for a socket path"
}

make_layout() {
	local root part
	root=$(choose_root)
	if [[ $root != "$DIR" ]]; then
		make_relocated_root "$root"
		return
	fi
	for part in data sock log; do
		mkdir_pg "$DIR/$part" 0700
	done
	chmod 0750 -- "$DIR/sock"
	chmod 0755 -- "$DIR/log"
}

# A relocated cluster whose directory vanished (reboot, /var/tmp cleaner)
# leaves dangling links behind: drop them so the next start re-creates it.
drop_dangling_links() {
	local part
	for part in data sock log; do
		if [[ -L $DIR/$part && ! -e $DIR/$part ]]; then
			log "$DIR/$part points nowhere; re-creating the cluster"
			rm -f -- "$DIR/$part"
		fi
	done
}

resolve_paths() {
	DATA=$(readlink -f -- "$DIR/data")
	SOCK=$(readlink -f -- "$DIR/sock")
	LOGDIR=$(readlink -f -- "$DIR/log")
}

is_initialized() { [[ -f $DIR/data/PG_VERSION ]]; }

# ---- creation ---------------------------------------------------------

port_in_use() {
	local p=$1 d
	for d in "$SOCK" /tmp /var/run/postgresql; do
		[[ ! -e $d/.s.PGSQL.$p && ! -e $d/.s.PGSQL.$p.lock ]] || return 0
	done
	command -v ss >/dev/null || return 1
	ss -Htan "sport = :$p" 2>/dev/null | grep -q .
}

# The port only names the socket file here (no TCP listener), but a port
# free everywhere avoids confusing anyone reading `ss` or other clusters.
pick_port() {
	local p i
	for i in $(seq 1 200); do
		p=$((20000 + (RANDOM * 32768 + RANDOM) % 40001))
		port_in_use "$p" || {
			printf '%s\n' "$p"
			return
		}
		: "$i"
	done
	die "no free port found in 20000-60000"
}

# Settings go in their own file, included from postgresql.conf, so a reader
# sees at a glance what differs from a stock cluster.
write_conf() {
	local port=$1 sock_q=${SOCK//\'/\'\'}
	as_pg tee "$DATA/as-pg.conf" >/dev/null <<-EOF
		# Written by scripts/pg.sh; the port is kept across restarts.
		port = $port
		listen_addresses = ''
		unix_socket_directories = '$sock_q'
		unix_socket_permissions = 0770
		password_encryption = 'scram-sha-256'
		max_connections = 200
		shared_buffers = 128MB
		# Durability stays as in production: speed comes from batching.
		fsync = on
		synchronous_commit = on
		full_page_writes = on
		# Checkpoints by time, as a production server is tuned: with the
		# default 1 GB of WAL a benchmark's bulk load forced one every 25 s,
		# and its fsync storm stalled commits for 50-90 ms.
		max_wal_size = 8GB
		checkpoint_timeout = 15min
		log_line_prefix = '%m [%p] %q%u@%d '
		log_timezone = 'UTC'
		timezone = 'UTC'
	EOF
	printf "include 'as-pg.conf'\n" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
}

# ---- secrets ----------------------------------------------------------

# One random password per login role, made once: DIR/secrets is the
# invoking user's, 0700, its files 0600. pgpass lists them for libpq.
make_secrets() {
	local sec=$DIR/secrets r
	(
		umask 077
		mkdir -p -- "$sec"
		chmod 0700 -- "$sec"
		for r in $LOGIN_ROLES; do
			[[ -s $sec/$r.password ]] ||
				head -c 24 /dev/urandom | base64 | tr -d '/+=\n' >"$sec/$r.password"
		done
		for r in $LOGIN_ROLES; do
			printf '*:*:*:%s:%s\n' "$r" "$(cat -- "$sec/$r.password")"
		done >"$sec/pgpass.new"
		mv -f -- "$sec/pgpass.new" "$sec/pgpass"
	)
}

password_of() { cat -- "$DIR/secrets/$1.password"; }

# scram on the local socket only: host connections are rejected outright
# (and there is no TCP listener anyway). initdb reads the admin's password
# from a file the server user can read: a 0600 copy of its own, removed at
# once.
run_initdb() {
	local pwfile=$LOGDIR/.initdb-pw
	log "initdb in $DATA"
	password_of "$ADMIN" | (umask 077 && as_pg tee "$pwfile" >/dev/null)
	as_pg "$BINDIR/initdb" -D "$DATA" -U "$ADMIN" --auth-local=scram-sha-256 \
		--auth-host=reject --pwfile="$pwfile" --encoding=UTF8 --locale=C --no-sync \
		>"$LOGDIR/initdb.log" 2>&1 || {
		rm -f -- "$pwfile"
		die "initdb failed" "see $LOGDIR/initdb.log"
	}
	rm -f -- "$pwfile"
	write_conf "$(pick_port)"
}

# ---- the running server -----------------------------------------------

conf_port() {
	sed -n 's/^port = \([0-9]*\)$/\1/p' "$DATA/as-pg.conf" | tail -n 1
}

is_running() {
	is_initialized && as_pg "$BINDIR/pg_ctl" status -D "$DATA" >/dev/null 2>&1
}

wait_ready() {
	local i
	for i in $(seq 1 60); do
		if "$BINDIR/pg_isready" -q -h "$SOCK" -p "$PORT" -d postgres -U "$ADMIN"; then
			return 0
		fi
		sleep 0.5
		: "$i"
	done
	die "server did not become ready" "see $LOGDIR/postgresql.log"
}

# The admin's psql, run by the invoking user (root can reach the 0750
# socket directory; the server user cannot read our secrets).
admin_psql() {
	PGPASSFILE=$DIR/secrets/pgpass "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$SOCK" -p "$PORT" -U "$ADMIN" "$@"
}

# Database $1 (created if missing) with the fleet's roles, schemas and
# grants (deploy/sql/roles.sql), the passwords from DIR/secrets.
prepare_db() {
	local db=$1 r var envs=()
	admin_psql -d postgres >/dev/null <<-EOF
		SELECT format('CREATE DATABASE %I', '$db')
		 WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = '$db')\gexec
	EOF
	for r in $LOGIN_ROLES; do
		[[ $r == "$ADMIN" ]] && continue
		var=${r#as_}
		var=${var#aftersales_}
		envs+=("AS_DB_PASSWORD_${var^^}=$(password_of "$r")")
	done
	env "${envs[@]}" PGPASSFILE="$DIR/secrets/pgpass" "$BINDIR/psql" -X -q -v ON_ERROR_STOP=1 \
		-h "$SOCK" -p "$PORT" -U "$ADMIN" -d "$db" -f "$ROLES_SQL" >/dev/null
}

# Idempotent: runs on every start, so an interrupted first start heals.
bootstrap_sql() { prepare_db "$DB"; }

print_env() {
	printf 'export PGHOST=%q\n' "$SOCK"
	printf 'export PGPORT=%q\n' "$PORT"
	printf 'export PGUSER=%q\n' "$ADMIN"
	printf 'export PGDATABASE=%q\n' "$DB"
	printf 'export PGPASSFILE=%q\n' "$DIR/secrets/pgpass"
}

start_server() {
	as_pg "$BINDIR/pg_ctl" start -D "$DATA" -w -t 60 \
		-l "$LOGDIR/postgresql.log" >/dev/null ||
		die "pg_ctl start failed" "see $LOGDIR/postgresql.log"
}

# ---- commands ---------------------------------------------------------

cmd_start() {
	drop_dangling_links
	if is_initialized && [[ ! -s $DIR/secrets/pgpass ]]; then
		die "$DIR holds a cluster made before its roles had passwords (trust on a 0777 socket)" \
			"scripts/pg.sh destroy $DIR, then start again"
	fi
	if ! is_initialized; then
		[[ ! -e $DIR/data ]] || [[ -z $(ls -A -- "$DIR/data") ]] ||
			die "$DIR/data exists but holds no cluster" "move it away, then retry"
		make_secrets
		make_layout
		resolve_paths
		run_initdb
	fi
	resolve_paths
	PORT=$(conf_port)
	if is_running; then
		log "already running on $SOCK port $PORT"
	else
		start_server
	fi
	wait_ready
	bootstrap_sql
	print_env
}

cmd_stop() {
	is_initialized || return 0
	resolve_paths
	is_running || return 0
	as_pg "$BINDIR/pg_ctl" stop -D "$DATA" -m fast -w -t 60 >/dev/null
	log "stopped"
}

cmd_status() {
	if ! is_initialized; then
		log "not created in $DIR"
		exit 3
	fi
	resolve_paths
	PORT=$(conf_port)
	if is_running; then
		printf 'running: pid %s, socket %s, port %s\n' \
			"$(head -n 1 "$DATA/postmaster.pid")" "$SOCK" "$PORT"
		return 0
	fi
	printf 'stopped: data %s\n' "$DATA"
	exit 3
}

cmd_env() {
	is_initialized || die "no cluster in $DIR" "run: scripts/pg.sh start $DIR"
	resolve_paths
	PORT=$(conf_port)
	print_env
}

# Deletes only what this script made: DIR's three entries and, when
# relocated, the /var/tmp directory whose source-dir names this DIR.
cmd_destroy() {
	local root=""
	cmd_stop
	if [[ -L $DIR/data ]]; then
		root=$(dirname -- "$(readlink -- "$DIR/data")")
	fi
	rm -rf -- "$DIR/data" "$DIR/sock" "$DIR/log" "$DIR/secrets"
	[[ -n $root ]] || return 0
	if [[ $root == "$RELOCATE_BASE"/as-pg-* &&
		$(cat -- "$root/source-dir" 2>/dev/null) == "$DIR" ]]; then
		rm -rf -- "$root"
	else
		log "left $root alone: it does not record $DIR as its owner"
	fi
}

cmd_prepare() {
	is_initialized || die "no cluster in $DIR" "run: scripts/pg.sh start $DIR"
	resolve_paths
	is_running || die "no running cluster in $DIR" "run: scripts/pg.sh start $DIR"
	PORT=$(conf_port)
	[[ $DBNAME =~ ^[a-z_][a-z0-9_]{0,62}$ ]] || die "bad database name \"$DBNAME\"" "use [a-z_][a-z0-9_]*"
	prepare_db "$DBNAME"
}

main() {
	local cmd=${1:-}
	DBNAME=
	if [[ $cmd == prepare && $# -eq 3 ]]; then
		DBNAME=$3
	else
		[[ $# -eq 2 ]] || usage
	fi
	case $cmd in start | stop | status | env | destroy | prepare) ;; *) usage ;; esac

	RUN_AS_ROOT=0
	PG_OS_USER=$(id -un)
	if [[ $EUID -eq 0 ]]; then
		id postgres >/dev/null 2>&1 ||
			die "no postgres OS user to run the server as" "apt-get install -y postgresql"
		RUN_AS_ROOT=1
		PG_OS_USER=postgres
	fi
	BINDIR=$(find_bindir)
	# Inherited libpq settings must not redirect our own admin connections.
	unset PGSERVICE PGOPTIONS PGHOSTADDR PGSSLMODE

	if [[ ! -d $2 ]]; then
		case $cmd in
		start) mkdir -p -- "$2" ;;
		stop | destroy) return 0 ;;
		prepare) die "no cluster in $2" "run: scripts/pg.sh start $2" ;;
		status) log "not created in $2" && exit 3 ;;
		env) die "no cluster in $2" "run: scripts/pg.sh start $2" ;;
		esac
	fi
	DIR=$(cd -- "$2" && pwd -P)
	# Two `start`s at once (parallel make) would race on initdb: serialise.
	exec 9>"$DIR/.pg.lock"
	flock -w 120 9 || die "another pg.sh holds $DIR/.pg.lock"
	"cmd_$cmd"
}

main "$@"
