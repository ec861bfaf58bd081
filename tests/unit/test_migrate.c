/* Unit tests for as_migrate: the identifier table; then, against
 * PostgreSQL, applying a list once (and not again), unqualified names
 * landing in the target schema (its search_path, local to the migration),
 * sources sharing a schema, a failing migration that leaves
 * nothing half-applied, a refused schema name, the per-schema advisory lock
 * that makes concurrent starts safe, the real runtime list, and counting
 * what is pending without applying it. */
#include "as_migrate.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

AS_TEST(ident_ok_table) {
  static const struct {
    const char *in;
    int ok;
  } rows[] = {
      {"a", 1},        {"_", 1},     {"probe", 1}, {"t_123_abc", 1}, {"_private", 1},
      {"a1", 1},       {"", 0},      {"1abc", 0},  {"Abc", 0},       {"aBc", 0},
      {"a-b", 0},      {"a b", 0},   {"a.b", 0},   {"a;drop", 0},    {"a\"b", 0},
      {"\xc3\xa9", 0}, {"cases", 1}, {"9", 0},     {"$a", 0},        {"a$", 0},
  };
  char s62[63], s63[64];

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char got[64], want[64];
    snprintf(got, sizeof got, "'%s' -> %d", rows[i].in, as_migrate_ident_ok(rows[i].in));
    snprintf(want, sizeof want, "'%s' -> %d", rows[i].in, rows[i].ok);
    AS_CHECK_STR_EQ(got, want);
  }
  memset(s62, 'a', 62);
  s62[62] = '\0';
  memset(s63, 'a', 63);
  s63[63] = '\0';
  AS_CHECK_INT_EQ(as_migrate_ident_ok(s62), 1);
  AS_CHECK_INT_EQ(as_migrate_ident_ok(s63), 0);
}

typedef struct fix {
  PGconn *check; /* assertions */
  PGconn *conn;  /* the connection migrations run on */
  char schema[64];
} fix_t;

static void fix_setup(fix_t *f) {
  memset(f, 0, sizeof *f);
  f->check = as_test_pg_connect();
  f->conn = as_test_pg_connect();
  as_test_pg_unique_name(f->schema, sizeof f->schema, "m");
}

static void fix_teardown(fix_t *f) {
  char sql[128];
  snprintf(sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", f->schema);
  AS_PG_EXEC(f->check, sql);
  PQfinish(f->conn);
  PQfinish(f->check);
}

/* Whether schema.name is a table. */
static bool has_table(fix_t *f, const char *name) {
  char q[128];
  snprintf(q, sizeof q, "%s.%s", f->schema, name);
  const char *v[1] = {q};
  return AS_PG_INT(f->check, "SELECT (to_regclass($1) IS NOT NULL)::int", 1, v) == 1;
}

/* "source:version ..." recorded in the schema, in order. */
static void recorded(fix_t *f, char *out, size_t outlen) {
  char sql[256];
  as_test_pg_sql(
      sql, sizeof sql,
      "SELECT coalesce(string_agg(source || ':' || version, ' ' ORDER BY source, version),"
      " '') FROM %s.schema_migrations",
      f->schema);
  as_test_pg_str_at(__FILE__, __LINE__, f->check, sql, 0, NULL, out, outlen);
}

static const as_migration_t TWO[] = {
    {"001_a", "CREATE TABLE a (x int PRIMARY KEY);"},
    {"002_b",
     "CREATE TABLE b (y int REFERENCES a (x));\n"
     "INSERT INTO a VALUES (1);\n"
     "INSERT INTO b VALUES (1);\n"
     "CREATE TABLE here AS SELECT current_schema() AS s;"},
    {NULL, NULL},
};

static const as_migration_t THREE[] = {
    {"001_a", "CREATE TABLE a (x int PRIMARY KEY);"},
    {"002_b", "this text is not run again: 002_b is recorded"},
    {"003_c", "CREATE TABLE c ();"},
    {NULL, NULL},
};

AS_TEST(apply_once) {
  fix_t f;
  char err[512] = "", rec[256];

  fix_setup(&f);
  char path_before[256], path_after[256];
  AS_PG_STR(f.conn, "SHOW search_path", 0, NULL, path_before);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", TWO, err, sizeof err), 2);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK_INT_EQ(has_table(&f, "a"), 1);
  AS_CHECK_INT_EQ(has_table(&f, "b"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a test:002_b");

  /* Unqualified names ran in the schema (its search_path), and only
   * there: the session's own search_path is what it was. */
  char sql[256], got[128];
  AS_PG_STR(f.check, as_test_pg_sql(sql, sizeof sql, "SELECT s FROM %s.here", f.schema), 0, NULL,
            got);
  AS_CHECK_STR_EQ(got, f.schema);
  AS_PG_STR(f.conn, "SHOW search_path", 0, NULL, path_after);
  AS_CHECK_STR_EQ(path_after, path_before);
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.check, as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.b", f.schema), 0,
                NULL),
      1);

  /* Again: nothing to do, nothing run (the INSERTs would fail). */
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", TWO, err, sizeof err), 0);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a test:002_b");

  /* A longer list applies only what is new. */
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", THREE, err, sizeof err), 1);
  AS_CHECK_INT_EQ(has_table(&f, "c"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a test:002_b test:003_c");

  /* The session is clean: no transaction left open, no lock left held. */
  AS_CHECK_INT_EQ(PQtransactionStatus(f.conn), PQTRANS_IDLE);
  char pid[16];
  snprintf(pid, sizeof pid, "%d", PQbackendPID(f.conn));
  const char *v[1] = {pid};
  AS_CHECK_INT_EQ(AS_PG_INT(f.check,
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND pid = $1::int",
                            1, v),
                  0);
  fix_teardown(&f);
}

/* Two sources in one schema keep separate books. */
AS_TEST(sources_share_a_schema) {
  fix_t f;
  char err[512] = "", rec[256];
  static const as_migration_t other[] = {
      {"001_a", "CREATE TABLE other_a ();"},
      {NULL, NULL},
  };

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", TWO, err, sizeof err), 2);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "other", other, err, sizeof err), 1);
  AS_CHECK_INT_EQ(has_table(&f, "other_a"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "other:001_a test:001_a test:002_b");
  fix_teardown(&f);
}

AS_TEST(empty_list_creates_the_books) {
  fix_t f;
  char err[512] = "", rec[64];
  static const as_migration_t none[] = {{NULL, NULL}};

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", none, err, sizeof err), 0);
  AS_CHECK_INT_EQ(has_table(&f, "schema_migrations"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "");
  fix_teardown(&f);
}

/* 002 creates a table, then fails: -EIO with the server's message, 002's
 * table rolled back and not recorded, 001 kept, 003 not tried. Fixed, the
 * list resumes at 002. */
AS_TEST(failing_migration_leaves_nothing_half_applied) {
  fix_t f;
  char err[512] = "", rec[256];
  static const as_migration_t bad[] = {
      {"001_a", "CREATE TABLE a (x int);"},
      {"002_half",
       "CREATE TABLE half (x int);\n"
       "INSERT INTO no_such_table VALUES (1);"},
      {"003_c", "CREATE TABLE c ();"},
      {NULL, NULL},
  };
  static const as_migration_t fixed[] = {
      {"001_a", "CREATE TABLE a (x int);"},
      {"002_half", "CREATE TABLE half (x int);"},
      {"003_c", "CREATE TABLE c ();"},
      {NULL, NULL},
  };

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", bad, err, sizeof err), -EIO);
  const char *want = "relation \"no_such_table\" does not exist";
  if (strstr(err, want) == NULL) AS_CHECK_STR_EQ(err, want);
  AS_CHECK_INT_EQ(has_table(&f, "a"), 1);
  AS_CHECK_INT_EQ(has_table(&f, "half"), 0);
  AS_CHECK_INT_EQ(has_table(&f, "c"), 0);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a");
  AS_CHECK_INT_EQ(PQtransactionStatus(f.conn), PQTRANS_IDLE);
  char pid[16];
  snprintf(pid, sizeof pid, "%d", PQbackendPID(f.conn));
  const char *v[1] = {pid};
  AS_CHECK_INT_EQ(AS_PG_INT(f.check,
                            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
                            " AND pid = $1::int",
                            1, v),
                  0);

  err[0] = '\0';
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", fixed, err, sizeof err), 2);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK_INT_EQ(has_table(&f, "half"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a test:002_half test:003_c");
  fix_teardown(&f);
}

/* A syntax error in the very first migration: nothing but the books. */
AS_TEST(syntax_error_is_eio) {
  fix_t f;
  char err[512] = "", rec[64];
  static const as_migration_t bad[] = {
      {"001_bad", "CREATE TABLE t (x int;"},
      {NULL, NULL},
  };

  fix_setup(&f);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", bad, err, sizeof err), -EIO);
  AS_CHECK(strstr(err, "syntax error") != NULL);
  AS_CHECK_INT_EQ(has_table(&f, "t"), 0);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "");
  fix_teardown(&f);
}

AS_TEST(bad_schema_name_is_einval) {
  static const char *const bad[] = {"Bad", "a-b", "", "1x", "x;DROP SCHEMA cases CASCADE", "pg\"x"};
  PGconn *c = as_test_pg_connect();

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char err[512] = "", want[256];
    AS_CHECK_INT_EQ(as_migrate_apply(c, bad[i], "test", TWO, err, sizeof err), -EINVAL);
    snprintf(want, sizeof want, "schema name \"%s\" is not a plain lower-case identifier", bad[i]);
    AS_CHECK_STR_EQ(err, want);
  }
  /* Nothing was created under the (case-folded) names. */
  AS_CHECK_INT_EQ(
      AS_PG_INT(c, "SELECT count(*) FROM pg_namespace WHERE nspname IN ('Bad', 'bad')", 0, NULL),
      0);
  /* The name in the message is bounded. */
  char longname[200], err[512] = "";
  memset(longname, 'A', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  AS_CHECK_INT_EQ(as_migrate_apply(c, longname, "test", TWO, err, sizeof err), -EINVAL);
  AS_CHECK(strlen(err) < 120);
  PQfinish(c);
}

/* Another session holds the schema's migration lock (a second instance
 * starting): apply waits for it, then finds the work done or does it. */
typedef struct apply_call {
  PGconn *conn;
  const char *schema;
  int rc;
  char err[512];
} apply_call_t;

static void *apply_thread(void *arg) {
  apply_call_t *a = arg;
  a->rc = as_migrate_apply(a->conn, a->schema, "test", TWO, a->err, sizeof a->err);
  return NULL;
}

AS_TEST(advisory_lock_serialises_concurrent_starts) {
  fix_t f;
  pthread_t th;
  char sql[256], rec[256];

  fix_setup(&f);
  AS_PG_EXEC(f.check,
             as_test_pg_sql(sql, sizeof sql, "SELECT pg_advisory_lock(hashtext('as_migrate:%s'))",
                            f.schema));
  apply_call_t call = {.conn = f.conn, .schema = f.schema, .rc = 99};
  AS_CHECK_INT_EQ(pthread_create(&th, NULL, apply_thread, &call), 0);
  AS_CHECK(as_test_pg_waits_on_lock(f.check, PQbackendPID(f.conn)));
  /* While it waits, the other "instance" applies the list itself. */
  char err[512] = "";
  AS_CHECK_INT_EQ(as_migrate_apply(f.check, f.schema, "test", TWO, err, sizeof err), 2);
  /* That call took and released the lock once more (session locks stack):
   * release the hold taken above too. */
  AS_PG_EXEC(f.check,
             as_test_pg_sql(sql, sizeof sql, "SELECT pg_advisory_unlock(hashtext('as_migrate:%s'))",
                            f.schema));
  AS_CHECK_INT_EQ(pthread_join(th, NULL), 0);
  AS_CHECK_STR_EQ(call.err, "");
  AS_CHECK_INT_EQ(call.rc, 0); /* found everything applied */
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(rec, "test:001_a test:002_b");
  fix_teardown(&f);
}

/* The real lists: the runtime tables in a fresh schema, idempotent; the
 * shared case tables exist. */
AS_TEST(runtime_and_cases_lists) {
  fix_t f;
  char err[512] = "", rec[256];

  fix_setup(&f);
  int n = 0;
  for (const as_migration_t *m = as_sql_runtime; m->version; m++) n++;
  AS_CHECK(n >= 1);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "runtime", as_sql_runtime, err, sizeof err),
                  n);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "runtime", as_sql_runtime, err, sizeof err),
                  0);
  AS_CHECK_INT_EQ(has_table(&f, "inbox"), 1);
  AS_CHECK_INT_EQ(has_table(&f, "outbox"), 1);
  AS_CHECK_INT_EQ(has_table(&f, "deadlines"), 1);
  recorded(&f, rec, sizeof rec);
  AS_CHECK_STR_EQ(
      rec, "runtime:001_inbox_outbox runtime:002_inbox_payload_hash runtime:003_outbox_parked");
  AS_CHECK(as_migrate_apply(f.conn, "cases", "cases", as_sql_cases, err, sizeof err) >= 0);
  AS_CHECK_INT_EQ(
      AS_PG_INT(f.check, "SELECT (to_regclass('cases.timeline') IS NOT NULL)::int", 0, NULL), 1);
  fix_teardown(&f);
}

/* as_migrate_pending, what a worker whose role may not migrate asks: every
 * version while the schema does not exist, then what is not yet applied,
 * then nothing. */
AS_TEST(pending_counts_what_is_not_applied) {
  fix_t f;
  char err[256] = "";
  fix_setup(&f);
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, f.schema, "test", THREE, err, sizeof err), 3);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", TWO, err, sizeof err), 2);
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, f.schema, "test", THREE, err, sizeof err), 1);
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, f.schema, "other", TWO, err, sizeof err), 2);
  AS_CHECK_INT_EQ(as_migrate_apply(f.conn, f.schema, "test", THREE, err, sizeof err), 1);
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, f.schema, "test", THREE, err, sizeof err), 0);
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, "Bad", "test", THREE, err, sizeof err), -EINVAL);
  /* A role that may not read the bookkeeping (yet): -EACCES, which a
   * waiting worker tells apart from a broken database. */
  PGresult *r = PQexec(f.conn,
                       "DO $$ BEGIN IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = "
                       "'as_test_noread') THEN CREATE ROLE as_test_noread; END IF; END $$");
  AS_CHECK_INT_EQ(PQresultStatus(r), PGRES_COMMAND_OK);
  PQclear(r);
  char grant[160];
  snprintf(grant, sizeof grant, "GRANT USAGE ON SCHEMA %s TO as_test_noread", f.schema);
  PQclear(PQexec(f.conn, grant));
  PQclear(PQexec(f.conn, "SET ROLE as_test_noread"));
  AS_CHECK_INT_EQ(as_migrate_pending(f.conn, f.schema, "test", THREE, err, sizeof err), -EACCES);
  AS_CHECK(strstr(err, "permission denied") != NULL);
  PQclear(PQexec(f.conn, "RESET ROLE"));
  snprintf(grant, sizeof grant, "REVOKE USAGE ON SCHEMA %s FROM as_test_noread", f.schema);
  PQclear(PQexec(f.conn, grant));
  fix_teardown(&f);
}
