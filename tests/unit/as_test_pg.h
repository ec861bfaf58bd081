/* as_test_pg: header-only helpers for unit tests that run against a real
 * PostgreSQL (the test binaries link only their own file, as_test.c and
 * libascommon.a, so everything here is static inline).
 *
 * The server comes from AS_TEST_DSN, a libpq conninfo (tests/run.sh starts a
 * private cluster and exports it). Without it a database case FAILS with a
 * message saying so: a database test never passes by doing nothing.
 *
 * Each case isolates itself: as_test_pg_setup creates a fresh schema
 * t_<pid>_<random> with the runtime tables (inbox, outbox, deadlines) and
 * makes sure the shared "cases" schema is migrated (concurrent application
 * is serialised by as_migrate's advisory lock); as_test_pg_teardown drops
 * the schema and closes the connection. Query helpers end the case with the
 * server's message when a statement fails, and take the caller's file:line
 * so the report points at the test, not at this header. */
#ifndef AS_TEST_PG_H
#define AS_TEST_PG_H

#include <libpq-fe.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "as_db.h"
#include "as_migrate.h"
#include "as_test.h"
#include "as_tx.h"

typedef struct as_test_pg {
  const char *dsn; /* from the environment; borrowed */
  PGconn *conn;    /* the checking connection; owned */
  char schema[64]; /* this case's private schema */
} as_test_pg_t;

/* The conninfo, or the case fails saying how to get one. */
static inline const char *as_test_pg_dsn_at(const char *file, int line) {
  const char *dsn = getenv("AS_TEST_DSN");
  if (dsn == NULL || dsn[0] == '\0') {
    fprintf(
        stderr,
        "# AS_TEST_DSN is not set: this case needs PostgreSQL. tests/run.sh exports it;"
        " by hand: eval \"$(scripts/pg.sh start /tmp/ut-pg)\"; export AS_TEST_DSN=\"host=$PGHOST"
        " port=$PGPORT user=$PGUSER dbname=$PGDATABASE\"\n");
    as_test_fail(file, line, "getenv(\"AS_TEST_DSN\") != NULL");
  }
  return dsn;
}
#define as_test_pg_dsn() as_test_pg_dsn_at(__FILE__, __LINE__)

/* A new connection (PQfinish it), or the case fails. */
static inline PGconn *as_test_pg_connect_at(const char *file, int line) {
  PGconn *c = PQconnectdb(as_test_pg_dsn_at(file, line));
  if (PQstatus(c) != CONNECTION_OK) {
    fprintf(stderr, "# cannot connect to AS_TEST_DSN: %s", PQerrorMessage(c));
    PQfinish(c);
    as_test_fail(file, line, "PQstatus(conn) == CONNECTION_OK");
  }
  /* "schema already exists, skipping" and the like are not test output. */
  PGresult *r = PQexec(c, "SET client_min_messages = warning");
  PQclear(r);
  return c;
}
#define as_test_pg_connect() as_test_pg_connect_at(__FILE__, __LINE__)

/* Runs sql with text parameters; returns the result (PQclear it). Fails the
 * case with the server's message unless the statement succeeded. */
static inline PGresult *as_test_pg_q_at(const char *file, int line, PGconn *c, const char *sql,
                                        int n, const char *const *vals) {
  PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    fprintf(stderr, "# query failed: %s#   sql: %s\n", PQresultErrorMessage(r), sql);
    PQclear(r);
    as_test_fail(file, line, sql);
  }
  return r;
}
#define AS_PG_Q(c, sql, n, vals) as_test_pg_q_at(__FILE__, __LINE__, (c), (sql), (n), (vals))

/* Runs a statement whose result is not needed. */
#define AS_PG_EXEC(c, sql) PQclear(as_test_pg_q_at(__FILE__, __LINE__, (c), (sql), 0, NULL))

/* The single value of a one-row, one-column query as an integer (a NULL
 * fails the case). */
static inline long long as_test_pg_int_at(const char *file, int line, PGconn *c, const char *sql,
                                          int n, const char *const *vals) {
  PGresult *r = as_test_pg_q_at(file, line, c, sql, n, vals);
  if (PQntuples(r) != 1 || PQnfields(r) != 1 || PQgetisnull(r, 0, 0)) {
    fprintf(stderr, "# expected one non-NULL value, got %d rows x %d columns\n#   sql: %s\n",
            PQntuples(r), PQnfields(r), sql);
    PQclear(r);
    as_test_fail(file, line, sql);
  }
  long long v = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return v;
}
#define AS_PG_INT(c, sql, n, vals) as_test_pg_int_at(__FILE__, __LINE__, (c), (sql), (n), (vals))

/* The single value of a one-row, one-column query copied into out ("\x01"
 * marks SQL NULL, which no test value contains). */
#define AS_PG_NULL "\x01"
static inline void as_test_pg_str_at(const char *file, int line, PGconn *c, const char *sql, int n,
                                     const char *const *vals, char *out, size_t outlen) {
  PGresult *r = as_test_pg_q_at(file, line, c, sql, n, vals);
  if (PQntuples(r) != 1 || PQnfields(r) != 1) {
    fprintf(stderr, "# expected one value, got %d rows x %d columns\n#   sql: %s\n", PQntuples(r),
            PQnfields(r), sql);
    PQclear(r);
    as_test_fail(file, line, sql);
  }
  snprintf(out, outlen, "%s", PQgetisnull(r, 0, 0) ? AS_PG_NULL : PQgetvalue(r, 0, 0));
  PQclear(r);
}
#define AS_PG_STR(c, sql, n, vals, out) \
  as_test_pg_str_at(__FILE__, __LINE__, (c), (sql), (n), (vals), (out), sizeof(out))

/* Runs sql expecting it to FAIL; copies the SQLSTATE and the primary
 * message. Fails the case if the statement succeeded. */
static inline void as_test_pg_fails_at(const char *file, int line, PGconn *c, const char *sql,
                                       int n, const char *const *vals, char sqlstate[6], char *msg,
                                       size_t msglen) {
  PGresult *r = PQexecParams(c, sql, n, NULL, vals, NULL, NULL, 0);
  ExecStatusType st = PQresultStatus(r);
  if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK) {
    fprintf(stderr, "# statement succeeded but should have failed\n#   sql: %s\n", sql);
    PQclear(r);
    as_test_fail(file, line, sql);
  }
  const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char *m = PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY);
  snprintf(sqlstate, 6, "%s", s ? s : "");
  snprintf(msg, msglen, "%s", m ? m : "");
  PQclear(r);
}
#define AS_PG_FAILS(c, sql, n, vals, sqlstate, msg) \
  as_test_pg_fails_at(__FILE__, __LINE__, (c), (sql), (n), (vals), (sqlstate), (msg), sizeof(msg))

/* Fills out with a schema name no other case (or concurrent run) uses. */
static inline void as_test_pg_unique_name(char *out, size_t outlen, const char *prefix) {
  unsigned rnd = 0;
  if (getrandom(&rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd) rnd = (unsigned)time(NULL);
  snprintf(out, outlen, "%s_%d_%08x", prefix, (int)getpid(), rnd);
}

/* Applies a migration list, failing the case with the server's message. */
static inline void as_test_pg_migrate_at(const char *file, int line, PGconn *c, const char *schema,
                                         const char *source, const as_migration_t *list) {
  char err[512] = "";
  int rc = as_migrate_apply(c, schema, source, list, err, sizeof err);
  if (rc < 0) {
    fprintf(stderr, "# as_migrate_apply(%s, %s) = %d: %s\n", schema, source, rc, err);
    as_test_fail(file, line, "as_migrate_apply(...) >= 0");
  }
}

/* Connects, creates this case's schema with the runtime tables and makes
 * sure the shared case tables exist. */
static inline void as_test_pg_setup_at(const char *file, int line, as_test_pg_t *t) {
  memset(t, 0, sizeof *t);
  t->dsn = as_test_pg_dsn_at(file, line);
  t->conn = as_test_pg_connect_at(file, line);
  as_test_pg_unique_name(t->schema, sizeof t->schema, "t");
  as_test_pg_migrate_at(file, line, t->conn, t->schema, "runtime", as_sql_runtime);
  as_test_pg_migrate_at(file, line, t->conn, "cases", "cases", as_sql_cases);
}
#define as_test_pg_setup(t) as_test_pg_setup_at(__FILE__, __LINE__, (t))

/* Drops the schema (a failed case leaves its schema behind for a look) and
 * closes the checking connection. */
static inline void as_test_pg_teardown_at(const char *file, int line, as_test_pg_t *t) {
  char sql[128];
  snprintf(sql, sizeof sql, "DROP SCHEMA %s CASCADE", t->schema);
  PQclear(as_test_pg_q_at(file, line, t->conn, sql, 0, NULL));
  PQfinish(t->conn);
  t->conn = NULL;
}
#define as_test_pg_teardown(t) as_test_pg_teardown_at(__FILE__, __LINE__, (t))

/* sql with every %s replaced by the schema, into out (for the per-schema
 * tables: identifiers cannot be $n parameters). */
static inline const char *as_test_pg_sql(char *out, size_t outlen, const char *fmt,
                                         const char *schema) {
  size_t o = 0;
  for (const char *p = fmt; *p && o + 1 < outlen; p++) {
    if (p[0] == '%' && p[1] == 's') {
      o += (size_t)snprintf(out + o, outlen - o, "%s", schema);
      if (o >= outlen) o = outlen - 1;
      p++;
    } else {
      out[o++] = *p;
    }
  }
  out[o] = '\0';
  return out;
}

/* Polls until the backend pid waits on a lock (pg_stat_activity), at most
 * about two seconds; returns 1 if it does. */
static inline int as_test_pg_waits_on_lock(PGconn *c, int pid) {
  char spid[16];
  snprintf(spid, sizeof spid, "%d", pid);
  const char *vals[1] = {spid};
  for (int i = 0; i < 200; i++) {
    PGresult *r = PQexecParams(c,
                               "SELECT 1 FROM pg_stat_activity WHERE pid = $1::int"
                               " AND wait_event_type = 'Lock'",
                               1, NULL, vals, NULL, NULL, 0);
    int waiting = PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1;
    PQclear(r);
    if (waiting) return 1;
    usleep(10000);
  }
  return 0;
}

/* A batch transaction context on the case's schema, as a worker has one:
 * its own connection (application_name app, search_path the case's schema)
 * and an as_tx_t over it. */
#define as_test_pg_tx_setup(pg, db, conf, tx, app) \
  as_test_pg_tx_setup_at(__FILE__, __LINE__, pg, db, conf, tx, app)
static inline void as_test_pg_tx_setup_at(const char *file, int line, as_test_pg_t *pg, as_db_t *db,
                                          as_tx_conf_t *conf, as_tx_t *tx, const char *app) {
  as_test_pg_setup_at(file, line, pg);
  as_db_init(db, pg->dsn, app, pg->schema, NULL);
  as_test_check_int(file, line, "as_db_ensure(db)", "0", as_db_ensure(db), 0);
  *conf = (as_tx_conf_t){.service = "test",
                         .instance = "test-1",
                         .group_id = "test",
                         .dlq_topic = "aftersales.deadletter.v1",
                         .dlq_max_bytes = 1024};
  as_tx_init(tx, db, conf);
}

static inline void as_test_pg_tx_teardown(as_test_pg_t *pg, as_db_t *db, as_tx_t *tx) {
  as_tx_free(tx);
  as_db_close(db);
  as_test_pg_teardown(pg);
}

#endif
