/* Unit tests for as_db against PostgreSQL: the connection's search_path is
 * the schema it was given (the one way the schema reaches SQL), whatever
 * the DSN's own options say, and reconnecting sets it again; the
 * per-connection statement cache (a statement is prepared once and run by
 * name, survives a rollback, is forgotten with its session); deferred
 * writes (sent without waiting inside a transaction; their failure is the
 * next call's, with the failing statement's SQLSTATE; a rollback leaves the
 * connection clean); the session timeouts (set on every connection; what
 * they cancel is transient). */
#include "as_db.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void check_path(as_db_t *db, const char *want) {
  PGresult *r = NULL;
  AS_CHECK_INT_EQ(as_db_query(db, "SHOW search_path", 0, NULL, &r), 0);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), want);
  PQclear(r);
}

AS_TEST(search_path_is_the_schema) {
  as_test_pg_t pg;
  as_db_t db;

  as_test_pg_setup(&pg);
  as_db_init(&db, pg.dsn, "test_db", pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_path(&db, pg.schema);
  /* Unqualified names are the schema's tables. */
  AS_CHECK_INT_EQ(
      as_db_query(&db, "INSERT INTO deadlines (case_id, kind, due_at) VALUES ('c', 'k', now())", 0,
                  NULL, NULL),
      0);
  char sql[160];
  AS_CHECK_INT_EQ(
      AS_PG_INT(pg.conn,
                as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.deadlines", pg.schema), 0,
                NULL),
      1);
  /* A new connection after the old one went away gets it again. */
  as_db_close(&db);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_path(&db, pg.schema);
  as_db_close(&db);
  as_test_pg_teardown(&pg);
}

/* A DSN that sets search_path in its options does not change it. */
AS_TEST(dsn_options_do_not_override_the_schema) {
  as_test_pg_t pg;
  as_db_t db;
  char dsn[1200];

  as_test_pg_setup(&pg);
  snprintf(dsn, sizeof dsn, "%s options='-c search_path=public'", pg.dsn);
  as_db_init(&db, dsn, "test_db", pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_path(&db, pg.schema);
  as_db_close(&db);
  as_test_pg_teardown(&pg);
}

/* Without a schema the server's search_path stays. */
AS_TEST(no_schema_leaves_the_default) {
  as_db_t db;

  as_db_init(&db, as_test_pg_dsn(), "test_db", NULL, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_path(&db, "\"$user\", public");
  as_db_close(&db);
}

static void open_db(as_db_t *db, const char *app) {
  as_db_init(db, as_test_pg_dsn(), app, NULL, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(db), 0);
}

static long long server_prepared(as_db_t *db) {
  PGresult *r = NULL;
  AS_CHECK_INT_EQ(as_db_query(db, "SELECT count(*) FROM pg_prepared_statements", 0, NULL, &r), 0);
  long long n = r ? strtoll(PQgetvalue(r, 0, 0), NULL, 10) : -1;
  PQclear(r);
  return n;
}

AS_TEST(statements_are_prepared_once_per_connection) {
  as_db_t db;
  open_db(&db, "test_db_cache");
  const char *vals[1] = {"41"};
  for (int i = 0; i < 3; i++) {
    PGresult *r = NULL;
    AS_CHECK_INT_EQ(as_db_query(&db, "SELECT $1::int + 1", 1, vals, &r), 0);
    AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "42");
    PQclear(r);
  }
  /* "SELECT $1::int + 1" and the counting statement itself. */
  AS_CHECK_INT_EQ(server_prepared(&db), 2);
  /* A failed statement is not cached, and the rollback keeps the others. */
  AS_CHECK_INT_EQ(as_db_begin(&db), 0);
  AS_CHECK_INT_EQ(as_db_query(&db, "SELECT no_such_column FROM pg_class", 0, NULL, NULL), -EIO);
  AS_CHECK_STR_EQ(db.sqlstate, "42703");
  as_db_rollback(&db);
  AS_CHECK_INT_EQ(server_prepared(&db), 3); /* and BEGIN; not the failed one */
  /* A new session starts with an empty cache and prepares again. */
  as_db_close(&db);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  AS_CHECK_INT_EQ(server_prepared(&db), 1);
  as_db_close(&db);
}

AS_TEST(deferred_writes_fail_on_the_next_call_with_their_own_sqlstate) {
  as_db_t db;
  open_db(&db, "test_db_defer");
  db.defer = true;
  AS_CHECK_INT_EQ(as_db_query(&db, "CREATE TEMP TABLE t (k int PRIMARY KEY)", 0, NULL, NULL), 0);

  /* Success: two deferred inserts, then a read sees both. */
  AS_CHECK_INT_EQ(as_db_begin(&db), 0);
  const char *one[1] = {"1"}, *two[1] = {"2"};
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, one, NULL), 0);
  AS_CHECK(db.pending);
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, two, NULL), 0);
  PGresult *r = NULL;
  AS_CHECK_INT_EQ(as_db_query(&db, "SELECT count(*) FROM t", 0, NULL, &r), 0);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "2");
  PQclear(r);
  AS_CHECK_INT_EQ(as_db_commit(&db), 0);

  /* Failure: the duplicate key is reported by the next statement, which
   * is not run; COMMIT after a deferred failure reports it too. */
  AS_CHECK_INT_EQ(as_db_begin(&db), 0);
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, one, NULL), 0);
  r = NULL;
  AS_CHECK_INT_EQ(as_db_query(&db, "SELECT count(*) FROM t", 0, NULL, &r), -EIO);
  AS_CHECK(r == NULL);
  AS_CHECK_STR_EQ(db.sqlstate, "23505");
  as_db_rollback(&db);

  AS_CHECK_INT_EQ(as_db_begin(&db), 0);
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, two, NULL), 0);
  AS_CHECK_INT_EQ(as_db_commit(&db), -EIO);
  AS_CHECK_STR_EQ(db.sqlstate, "23505");
  as_db_rollback(&db);

  /* A rollback with a result still pending leaves the connection usable. */
  AS_CHECK_INT_EQ(as_db_begin(&db), 0);
  const char *three[1] = {"3"};
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, three, NULL), 0);
  as_db_rollback(&db);
  AS_CHECK(!db.pending);
  r = NULL;
  AS_CHECK_INT_EQ(as_db_query(&db, "SELECT count(*) FROM t", 0, NULL, &r), 0);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "2");
  PQclear(r);

  /* Outside a transaction nothing is deferred. */
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO t VALUES ($1::int)", 1, one, NULL), -EIO);
  AS_CHECK_STR_EQ(db.sqlstate, "23505");
  as_db_close(&db);
}

static void check_setting(as_db_t *db, const char *sql, const char *want) {
  PGresult *r = NULL;
  AS_CHECK_INT_EQ(as_db_query(db, sql, 0, NULL, &r), 0);
  AS_CHECK_STR_EQ(r ? PQgetvalue(r, 0, 0) : "", want);
  PQclear(r);
}

/* The session limits are set on every connection, and a statement they
 * cancel is a transient failure: the batch is retried, not dead-lettered. */
AS_TEST(timeouts_are_set_per_session_and_transient) {
  as_db_t db;

  as_db_init(&db, as_test_pg_dsn(), "test_db", NULL, NULL);
  db.statement_timeout_ms = 200;
  db.lock_timeout_ms = 150;
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_setting(&db, "SHOW statement_timeout", "200ms");
  check_setting(&db, "SHOW lock_timeout", "150ms");
  AS_CHECK_INT_EQ(as_db_query(&db, "SELECT pg_sleep(2)", 0, NULL, NULL), -EAGAIN);
  AS_CHECK_STR_EQ(db.sqlstate, "57014");
  AS_CHECK(as_db_sqlstate_transient("55P03"));
  as_db_close(&db);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0); /* a reconnect sets them again */
  check_setting(&db, "SHOW statement_timeout", "200ms");
  as_db_close(&db);
  /* 0 keeps the server's. */
  as_db_init(&db, as_test_pg_dsn(), "test_db", NULL, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  check_setting(&db, "SHOW statement_timeout", "0");
  as_db_close(&db);
}
