"""Least privilege in every stack (deploy/sql/roles.sql), through the running
fleet: each worker connects as its own role (as_<service>) and runs its
service; migrations ran as the owner (aftersales_owner); a worker role
cannot write another service's schema, cannot UPDATE/DELETE/TRUNCATE the
case timeline, change a case's state except through cases.move, set
session_replication_role or COPY ... TO PROGRAM. The embedded cluster
wants a password (scram, no trust) and keeps everyone but its server user
and root off its socket. docker-compose's db-roles and migrate one-shots
run the fleet on the embedded cluster (the workers never migrate, they
wait for the job), and compose and deploy/k8s name exactly the roles
roles.sql creates.
"""
import os
import re
import stat
import subprocess
import uuid
from urllib.parse import urlparse

import psycopg2
import pytest
import yaml

from conftest import (BIN_DIR, CASES_TOPIC, ROOT, SLOW, intake_pb, order_events, produce_orders,
                      produce_requests, request_envelope, start_inspection, start_intake, start_logistics,
                      start_service, wait_until)
from review_helpers import of_kind, start_review, state, wait_events, wait_state

ROLES_SQL = ROOT / "deploy/sql/roles.sql"
COMPOSE = ROOT / "docker-compose.yml"
K8S = ROOT / "deploy/k8s"


def _is_worker(svc):
    """A compose service that runs a worker (as-<service>); as-topics, the
    topic initialiser, is a tool run from the same image."""
    cmd = svc.get("command") or [""]
    return str(cmd[0]).startswith("as-") and cmd[0] != "as-topics"


def fleet_in_roles_sql():
    """The services roles.sql makes an as_<service> role for."""
    text = ROLES_SQL.read_text()
    block = text.split("INSERT INTO as_fleet VALUES", 1)[1].split(";", 1)[0]
    return set(re.findall(r"\('([a-z_]+)',", block))


def connect_as(h, role, dbname=None, **kw):
    conn = psycopg2.connect(h.pg.dsn(dbname or h.dbname, role), connect_timeout=5, **kw)
    conn.autocommit = True
    return conn


def refused(conn, sql):
    """The server's error for sql (None if it ran)."""
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
        return None
    except psycopg2.Error as e:
        return e


def assert_denied(conn, sql, what="permission denied"):
    e = refused(conn, sql)
    assert e is not None, f"{conn.info.user} could run: {sql}"
    assert e.pgcode == "42501" and what in str(e), f"{conn.info.user}: {sql}: {e.pgcode} {e}"


def one_case_through_fleet(h):
    """A cheap return through intake and review: opened by intake (as
    as_intake), moved to REFUNDED by review (as as_review, via cases.move)."""
    common, _, _, _ = intake_pb(h)
    tag = uuid.uuid4().hex[:8]
    order_id, buyer_id = f"o-{tag}", f"b-{tag}"
    produce_orders(h, order_events(h, order_id, buyer_id, [("l1", "SKU-1", 500, 1)]))
    wait_until(lambda: h.sql("SELECT 1 FROM intake.orders WHERE order_id = %s AND delivered_at_us IS NOT NULL",
                             (order_id,)), 20 * SLOW, what="order projected")
    cases_r = h.reader(CASES_TOPIC)
    produce_requests(h, [request_envelope(h, order_id, buyer_id, lines=(("l1", 1),), declared_unused=True,
                                          reason=common.REASON_SIZE_MISMATCH)])
    evs = wait_events(h, cases_r, lambda e: of_kind(e, "case_opened"), what="case opened")
    case_id = of_kind(evs, "case_opened")[0][1].case_id
    wait_state(h, case_id, "REFUNDED")
    return case_id


WORKER_SCHEMAS = {"probe": "probe_state", "intake": "orders", "review": "ledger", "inspection": "tasks"}
# Roles with no grant on the shared case tables at all.
NO_CASES = ("probe", "inspection")


def test_each_worker_role_runs_its_service_and_nothing_more(h):
    h.start_worker()
    start_review(h)
    start_intake(h)
    start_inspection(h)
    start_logistics(h)
    # (a) every worker runs, as its own role: probes counted, a case opened
    # by intake and refunded by review.
    h.produce_probe("p-priv", 1)
    wait_until(lambda: h.counts().get("p-priv") == 1, 20 * SLOW, what="probe applied")
    case_id = one_case_through_fleet(h)
    assert state(h, case_id) == "REFUNDED"
    users = dict(h.sql("SELECT split_part(application_name, '-', 1), string_agg(DISTINCT usename, ',')"
                       " FROM pg_stat_activity WHERE datname = current_database()"
                       " AND application_name ~ '^(probe|intake|review|inspection|logistics)-' GROUP BY 1"))
    assert users == {"probe": "as_probe", "intake": "as_intake", "review": "as_review",
                     "inspection": "as_inspection", "logistics": "as_logistics"}, users
    # inspection projected the case from CaseOpened, as its own role
    wait_until(lambda: h.sql("SELECT 1 FROM inspection.cases WHERE case_id = %s", (case_id,)),
               20 * SLOW, what="case projected by inspection")
    wait_until(lambda: h.sql("SELECT 1 FROM logistics.cases WHERE case_id = %s", (case_id,)),
               20 * SLOW, what="case projected by logistics")
    owners = h.sql("SELECT DISTINCT pg_get_userbyid(relowner) FROM pg_class c"
                   " JOIN pg_namespace n ON n.oid = c.relnamespace"
                   " WHERE n.nspname IN ('cases', 'probe', 'intake', 'review', 'inspection', 'logistics')"
                   " AND c.relkind = 'r'")
    assert owners == [("aftersales_owner",)], owners
    assert h.scalar("SELECT count(*) FROM pg_roles WHERE rolname LIKE 'as\\_%%' AND rolsuper") == 0
    # A forged move: as_intake cannot UPDATE the state itself (the trigger-free
    # way), only call cases.move, which refuses what does not chain.
    for svc in WORKER_SCHEMAS:
        conn = connect_as(h, f"as_{svc}")
        try:
            assert conn.info.user == f"as_{svc}"
            # its own schema: full DML, but no DDL
            assert refused(conn, f"SELECT count(*) FROM {svc}.{WORKER_SCHEMAS[svc]}") is None
            assert_denied(conn, f"CREATE TABLE {svc}.x (i int)")
            assert_denied(conn, f"TRUNCATE {svc}.inbox")
            # (b) another service's schema
            for other, table in WORKER_SCHEMAS.items():
                if other == svc:
                    continue
                assert_denied(conn, f"DELETE FROM {other}.{table}")
                assert_denied(conn, f"DELETE FROM {other}.outbox")
            if svc != "review":
                assert_denied(conn, "UPDATE review.ledger SET paid_minor = paid_minor + 100")
            # the shared case tables: no state, version or paid figure by hand
            assert_denied(conn, "UPDATE cases.cases SET state = 'CLOSED'")
            assert_denied(conn, "UPDATE cases.cases SET paid_minor = paid_minor + 100")
            assert_denied(conn, "DELETE FROM cases.cases")
            # (c) the timeline is append-only for every worker role: refused
            # by privilege, before the trigger (which a replica role skips)
            assert_denied(conn, "UPDATE cases.timeline SET reason = 'rewritten'")
            assert_denied(conn, "DELETE FROM cases.timeline")
            assert_denied(conn, "TRUNCATE cases.timeline")
            # (d) the trigger cannot be switched off
            assert_denied(conn, "SET session_replication_role = replica")
            # (e) no shell through the server
            assert_denied(conn, "COPY (SELECT 1) TO PROGRAM 'true'", what="")
            assert_denied(conn, "CREATE SCHEMA x")
            if svc in NO_CASES:  # reads nothing of the shared case tables either
                assert_denied(conn, "SELECT count(*) FROM cases.cases")
                assert_denied(conn, "SELECT count(*) FROM cases.timeline")
        finally:
            conn.close()
    # A mover may call cases.move, which refuses a move that skips the chain.
    conn = connect_as(h, "as_review")
    try:
        e = refused(conn, "SELECT cases.move(ARRAY['%s'], ARRAY[99::bigint], ARRAY['REFUNDED'],"
                          " ARRAY['CLOSED'], ARRAY['agent'], ARRAY['x'], ARRAY['forged'], ARRAY[NULL::uuid],"
                          " ARRAY[NULL::jsonb])" % case_id)
        assert e is not None and e.pgcode == "23514" and "illegal case move" in str(e), e
    finally:
        conn.close()
    probe = connect_as(h, "as_probe")
    try:
        assert_denied(probe, "SELECT cases.move(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
    finally:
        probe.close()
    assert state(h, case_id) == "REFUNDED"


def _psql():
    for p in ("/usr/lib/postgresql/15/bin/psql", "/usr/bin/psql"):
        if os.path.exists(p):
            return p
    pytest.skip("no psql")


def test_socket_wants_a_password_and_keeps_other_users_out(h):
    e = h.pg.env
    # no trust line anywhere; scram for every local connection
    rules = h.sql("SELECT type, auth_method FROM pg_hba_file_rules")
    assert rules and not [r for r in rules if r[1] == "trust"], rules
    assert {r[1] for r in rules if r[0] == "local"} == {"scram-sha-256"}, rules
    # without a password, with a wrong one: refused
    for role in ("postgres", "aftersales_owner", "as_intake"):
        base = f"host={e['PGHOST']} port={e['PGPORT']} user={role} dbname={h.dbname}"
        with pytest.raises(psycopg2.OperationalError, match="no password supplied"):
            psycopg2.connect(base + " passfile=/dev/null", connect_timeout=5)
        with pytest.raises(psycopg2.OperationalError, match="password authentication failed"):
            psycopg2.connect(base + " passfile=/dev/null password=guess", connect_timeout=5)
    # the socket's directory is the server user's, 0750 at most
    st = os.stat(e["PGHOST"])
    assert st.st_mode & 0o007 == 0, oct(st.st_mode)
    secrets = os.path.dirname(e["PGPASSFILE"])
    assert stat.S_IMODE(os.stat(secrets).st_mode) == 0o700
    for f in os.listdir(secrets):
        assert stat.S_IMODE(os.stat(os.path.join(secrets, f)).st_mode) == 0o600, f
    if os.geteuid() != 0:
        return
    assert st.st_uid == int(subprocess.run(["id", "-u", "postgres"], capture_output=True, text=True).stdout)
    # nobody cannot reach the socket, even knowing the admin's password
    pw = open(os.path.join(secrets, "postgres.password")).read().strip()
    r = subprocess.run(["runuser", "-u", "nobody", "--", _psql(), "-X", "-w", "-h", e["PGHOST"], "-p",
                        e["PGPORT"], "-U", "postgres", "-d", h.dbname, "-c", "SELECT 1"],
                       cwd="/", capture_output=True, text=True, timeout=30,
                       env={"PATH": os.environ["PATH"], "PGPASSWORD": pw})
    assert r.returncode != 0 and "Permission denied" in r.stderr, (r.returncode, r.stderr)


# ---- docker-compose's roles, grants and migrate job on the embedded cluster ----

def compose():
    return yaml.safe_load(COMPOSE.read_text())


def default_of(value):
    """${VAR:-default} -> default (compose's dev-only values)."""
    m = re.fullmatch(r"\$\{[A-Z_]+:-(.*)\}", str(value))
    return m.group(1) if m else str(value)


def compose_env(service):
    return {k: default_of(v) for k, v in (service.get("environment") or {}).items()}


def embedded_dsn(h, url, dbname):
    """Compose's postgresql://role@postgres/aftersales, on the embedded socket."""
    u = urlparse(url)
    e = h.pg.env
    return f"host={e['PGHOST']} port={e['PGPORT']} user={u.username} dbname={dbname}"


def test_compose_fleet_runs_on_the_embedded_cluster_with_its_grants(h):
    c = compose()["services"]
    db = h.dbname + "_compose"
    admin = h.pg.connect()
    admin.cursor().execute(f"CREATE DATABASE {db}")
    admin.close()
    e = h.pg.env
    base = {"PATH": f"{BIN_DIR}:{os.environ['PATH']}", "PGHOST": e["PGHOST"], "PGPORT": e["PGPORT"],
            "PGDATABASE": db}
    try:
        # db-roles: compose's own command, with roles.sql where it mounts it
        roles = c["db-roles"]
        mounts = {m.split(":")[1]: m.split(":")[0] for m in roles["volumes"]}
        assert mounts == {"/etc/aftersales/roles.sql": "./deploy/sql/roles.sql"}, mounts
        cmd = [str(ROOT / "deploy/sql/roles.sql") if a == "/etc/aftersales/roles.sql" else a
               for a in roles["command"]]
        assert cmd[0] == "psql"
        renv = dict(compose_env(roles), **base, PGUSER="postgres", PGPASSFILE=e["PGPASSFILE"])
        renv.pop("PGPASSWORD")  # the embedded admin's password is in the passfile
        r = subprocess.run([_psql()] + cmd[1:], env=renv, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stderr
        binaries = [s for s, v in c.items() if _is_worker(v) and (BIN_DIR / v["command"][0]).exists()]
        assert sorted(binaries) == ["inspection", "intake", "logistics", "notification", "review"], binaries

        def worker_env(svc):
            env = compose_env(c[svc])
            return {"AS_DB_DSN": embedded_dsn(h, env["AS_DB_DSN"], db), "PGPASSWORD": env["PGPASSWORD"],
                    "AS_DB_MIGRATE_DSN": ""}

        # A worker started before the migrate job waits, not ready, and
        # does not crash-loop (its role may not create anything).
        early = start_service(h, "review", ready=False, **worker_env("review"))
        wait_until(lambda: early.logged("migrations not applied yet; waiting for the migration job"),
                   20 * SLOW, what="review waiting for migrations")
        assert early.proc.poll() is None
        if early.logged("worker started"):  # a listener up before the database: it says not ready
            early.wait_started()
            assert not early.ready()
        # migrate: compose's loop, as the owner, with compose's password
        mig = c["migrate"]
        menv = compose_env(mig)
        assert urlparse(menv["AS_DB_DSN"]).username == "aftersales_owner"
        r = subprocess.run(["/bin/sh", "-c", mig["command"][0].replace("$$", "$")],
                           env=dict(base, AS_DB_DSN=embedded_dsn(h, menv["AS_DB_DSN"], db),
                                    PGPASSWORD=menv["PGPASSWORD"]),
                           capture_output=True, text=True, timeout=120)
        assert r.returncode == 0, r.stderr
        early.wait_started()
        early.wait_ready()
        start_service(h, "intake", **worker_env("intake"))
        start_service(h, "inspection", **worker_env("inspection"))
        start_service(h, "logistics", **worker_env("logistics"))
        start_service(h, "notification", **worker_env("notification"))
        # each worker runs as its compose role and cannot write another's tables
        conn = psycopg2.connect(h.pg.dsn(db))
        conn.autocommit = True
        with conn.cursor() as cur:
            cur.execute("SELECT DISTINCT usename FROM pg_stat_activity WHERE datname = %s"
                        " AND application_name ~ '^(intake|review|inspection|logistics|notification)-'", (db,))
            assert sorted(x[0] for x in cur.fetchall()) == ["as_inspection", "as_intake", "as_logistics",
                                                            "as_notification", "as_review"]
        conn.close()
        for svc, other in (("intake", "review.ledger"), ("review", "intake.orders"),
                           ("inspection", "review.ledger"), ("logistics", "review.ledger"),
                           ("notification", "review.ledger")):
            dsn = embedded_dsn(h, compose_env(c[svc])["AS_DB_DSN"], db)
            conn = psycopg2.connect(dsn, password=compose_env(c[svc])["PGPASSWORD"], connect_timeout=5)
            conn.autocommit = True
            try:
                assert_denied(conn, f"DELETE FROM {other}")
                assert_denied(conn, "UPDATE cases.timeline SET reason = 'x'")
                assert_denied(conn, "SET session_replication_role = replica")
            finally:
                conn.close()
    finally:
        for w in list(h.workers):
            w.close()
        # compose's dev passwords were set on the cluster-wide roles: give
        # them back the cluster's own (its pgpass) for the next tests
        h.pg.prepare(h.dbname)
        admin = h.pg.connect()
        admin.cursor().execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        admin.close()


# ---- static: every stack names the roles roles.sql creates ---------------------

def test_compose_and_k8s_name_the_roles_roles_sql_creates():
    fleet = fleet_in_roles_sql()
    assert {"intake", "review", "inspection", "logistics", "notification", "probe"} == fleet
    c = compose()["services"]
    workers = {s for s, v in c.items() if _is_worker(v)}
    assert workers and workers <= fleet
    for s in workers:
        env = compose_env(c[s])
        assert urlparse(env["AS_DB_DSN"]).username == f"as_{s}", (s, env)
        assert "AS_DB_MIGRATE_DSN" not in env, s  # workers never migrate in compose
        assert c[s]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}, s
    assert urlparse(compose_env(c["migrate"])["AS_DB_DSN"]).username == "aftersales_owner"
    pw = set(compose_env(c["db-roles"]))
    assert {f"AS_DB_PASSWORD_{s.upper()}" for s in workers} | {"AS_DB_PASSWORD_OWNER"} <= pw
    assert all(f"getenv pw_{s} AS_DB_PASSWORD_{s.upper()}" in ROLES_SQL.read_text() for s in fleet)
    # k8s: every Deployment's role, the Secret's DSNs, the Job's passwords
    deployed = {p.stem for p in K8S.glob("*.yaml")
                if "app.kubernetes.io/component: worker" in p.read_text()}
    assert deployed and deployed <= fleet
    docs = [d for f in ("config.yaml", "db.yaml") for d in yaml.safe_load_all((K8S / f).read_text()) if d]
    secret = next(d for d in docs if d["kind"] == "Secret")["stringData"]
    named = {urlparse(v).username for k, v in secret.items() if k.endswith("-dsn")}
    assert named == {f"as_{w}" for w in deployed} | {"aftersales_owner", "postgres"}, named
    for w in deployed:
        assert f"{w}-password" in secret
        text = (K8S / f"{w}.yaml").read_text()
        assert f"key: {w}-dsn" in text and f"key: {w}-password" in text, w
    job = next(d for d in docs if d["kind"] == "Job")["spec"]["template"]["spec"]
    init_env = {e["name"] for e in job["initContainers"][0]["env"]}
    assert {f"AS_DB_PASSWORD_{w.upper()}" for w in deployed} | {"AS_DB_PASSWORD_OWNER"} <= init_env
    assert {e["valueFrom"]["secretKeyRef"]["key"] for e in job["containers"][0]["env"]} == \
        {"owner-dsn", "owner-password"}
    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "aftersales-db-roles")
    assert cm["data"]["roles.sql"].rstrip() == ROLES_SQL.read_text().rstrip()
    # the embedded cluster makes a password for each login role
    pg_sh = (ROOT / "scripts/pg.sh").read_text()
    login = set(re.search(r'LOGIN_ROLES="([^"]*)"', pg_sh).group(1).split())
    assert login == {f"as_{s}" for s in fleet} | {"aftersales_owner", "postgres"}, login
    assert "auth-local=scram-sha-256" in pg_sh and "=trust" not in pg_sh
