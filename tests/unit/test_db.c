/* Unit tests for as_db against PostgreSQL: the connection's search_path is
 * the schema it was given (the one way the schema reaches SQL), whatever
 * the DSN's own options say, and reconnecting sets it again. */
#include "as_db.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <stdio.h>
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
  AS_CHECK_INT_EQ(as_db_query(&db, "INSERT INTO deadlines (case_id, kind, due_at) VALUES ('c', 'k', now())", 0,
                              NULL, NULL),
                  0);
  char sql[160];
  AS_CHECK_INT_EQ(AS_PG_INT(pg.conn, as_test_pg_sql(sql, sizeof sql, "SELECT count(*) FROM %s.deadlines", pg.schema),
                            0, NULL),
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
