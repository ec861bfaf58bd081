/* Unit tests for as_cols: the statement text written from a column table
 * ({{set}}, {{set:ord}}, {{$name}}), the array literals of each kind of
 * value, every way a statement and its values can disagree (refused with
 * -EINVAL before anything is sent), a second statement over the same
 * values, and, against PostgreSQL, a statement with two sets of different
 * lengths. */
#include "as_cols.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <errno.h>
#include <string.h>

/* Binds c to stmt; returns the count, the text in sql (as_buf_free it). */
static int bind_stmt(as_cols_t *c, const as_bulk_t *stmt, as_buf_t *sql, const char **vals,
                     char *err, size_t errlen) {
  as_buf_init(sql);
  err[0] = '\0';
  return as_cols_bind(c, stmt, sql, vals, err, errlen);
}

enum { A_ID, A_QTY, A_OK };
static const as_col_t a_cols[] = {
    [A_ID] = {"case_id", "text"},
    [A_QTY] = {"quantity", "int"},
    [A_OK] = {"ok", "bool"},
};
static const as_bulk_t a_sql =
    AS_BULK("INSERT INTO t SELECT * FROM {{u}} RETURNING u.case_id", a_cols);

AS_TEST(one_set) {
  as_cols_t c;
  as_buf_t sql;
  const char *vals[AS_COLS_MAX];
  char err[200];

  as_cols_init(&c, &a_sql);
  AS_CHECK_INT_EQ(as_cols_rows(&c), 0);
  as_cols_str(&c, A_ID, "c-1");
  as_cols_int(&c, A_QTY, 2);
  as_cols_bool(&c, A_OK, true);
  as_cols_str(&c, A_ID, "say \"hi\" \\ ,{}");
  as_cols_null(&c, A_QTY);
  as_cols_bool(&c, A_OK, false);
  AS_CHECK_INT_EQ(as_cols_rows(&c), 2);
  AS_CHECK_INT_EQ(bind_stmt(&c, &a_sql, &sql, vals, err, sizeof err), 3);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK_STR_EQ(as_buf_str(&sql),
                  "INSERT INTO t SELECT * FROM unnest($1::text[], $2::int[], $3::bool[])"
                  " AS u(case_id, quantity, ok) RETURNING u.case_id");
  AS_CHECK_STR_EQ(vals[A_ID], "{\"c-1\",\"say \\\"hi\\\" \\\\ ,{}\"}");
  AS_CHECK_STR_EQ(vals[A_QTY], "{2,NULL}");
  AS_CHECK_STR_EQ(vals[A_OK], "{t,f}");
  as_buf_free(&sql);
  as_cols_free(&c);
}

/* Sets of their own, an ordinal, a bare array parameter; $n follow the
 * table, not the text. */
enum { L_CASE, L_QTY, R_CASE, R_HEX };
static const as_col_t multi_cols[] = {
    [L_CASE] = {"l.case_id", "text"},
    [L_QTY] = {"l.qty", "int"},
    [R_CASE] = {"r.case_id", "text"},
    [R_HEX] = {"r.body", "text"},
};
static const as_bulk_t multi_sql = AS_BULK(
    "WITH x AS (SELECT * FROM {{r}}) SELECT l.o FROM {{l:o}} WHERE l.case_id = ANY({{$r.case_id}})",
    multi_cols);

AS_TEST(sets_ordinality_and_params) {
  as_cols_t c;
  as_buf_t sql;
  const char *vals[AS_COLS_MAX];
  char err[200];
  static const uint8_t bytes[] = {0x00, 0xab, 0x10};

  as_cols_init(&c, &multi_sql);
  for (int i = 0; i < 3; i++) {
    as_cols_str(&c, L_CASE, "c");
    as_cols_int(&c, L_QTY, i);
  }
  as_cols_str(&c, R_CASE, "c");
  as_cols_hex(&c, R_HEX, bytes, sizeof bytes);
  AS_CHECK_INT_EQ(as_cols_rows(&c), 3);
  AS_CHECK_INT_EQ(bind_stmt(&c, &multi_sql, &sql, vals, err, sizeof err), 4);
  AS_CHECK_STR_EQ(as_buf_str(&sql),
                  "WITH x AS (SELECT * FROM unnest($3::text[], $4::text[]) AS r(case_id, body))"
                  " SELECT l.o FROM unnest($1::text[], $2::int[]) WITH ORDINALITY"
                  " AS l(case_id, qty, o) WHERE l.case_id = ANY($3::text[])");
  AS_CHECK_STR_EQ(vals[L_QTY], "{0,1,2}");
  AS_CHECK_STR_EQ(vals[R_HEX], "{00ab10}");
  as_buf_free(&sql);
  as_cols_free(&c);
}

/* A second statement over the same values: the arrays are closed once. */
static const as_bulk_t a_other = AS_BULK("SELECT {{$quantity}}, {{$case_id}}, {{$ok}}", a_cols);

AS_TEST(second_statement_same_values) {
  as_cols_t c;
  as_buf_t sql;
  const char *vals[AS_COLS_MAX];
  char err[200];

  as_cols_init(&c, &a_sql);
  as_cols_str(&c, A_ID, "x");
  as_cols_int(&c, A_QTY, 1);
  as_cols_bool(&c, A_OK, true);
  AS_CHECK_INT_EQ(bind_stmt(&c, &a_sql, &sql, vals, err, sizeof err), 3);
  as_buf_free(&sql);
  AS_CHECK_INT_EQ(bind_stmt(&c, &a_other, &sql, vals, err, sizeof err), 3);
  AS_CHECK_STR_EQ(as_buf_str(&sql), "SELECT $2::int[], $1::text[], $3::bool[]");
  AS_CHECK_STR_EQ(vals[A_ID], "{\"x\"}");
  as_buf_free(&sql);
  /* A value after the arrays were closed is refused; a reset starts over. */
  as_cols_int(&c, A_QTY, 2);
  AS_CHECK_INT_EQ(bind_stmt(&c, &a_sql, &sql, vals, err, sizeof err), -EINVAL);
  as_buf_free(&sql);
  as_cols_reset(&c);
  AS_CHECK_INT_EQ(as_cols_rows(&c), 0);
  as_cols_str(&c, A_ID, "y");
  as_cols_int(&c, A_QTY, 3);
  as_cols_bool(&c, A_OK, false);
  AS_CHECK_INT_EQ(bind_stmt(&c, &a_sql, &sql, vals, err, sizeof err), 3);
  AS_CHECK_STR_EQ(vals[A_QTY], "{3}");
  as_buf_free(&sql);
  as_cols_free(&c);
}

/* Each disagreement between a statement, its table and its values. */
static void refused(const as_bulk_t *stmt, void (*fill)(as_cols_t *), const char *want) {
  as_cols_t c;
  as_buf_t sql;
  const char *vals[AS_COLS_MAX];
  char err[200];

  as_cols_init(&c, stmt);
  fill(&c);
  AS_CHECK_INT_EQ(bind_stmt(&c, stmt, &sql, vals, err, sizeof err), -EINVAL);
  if (!strstr(err, want)) AS_CHECK_STR_EQ(err, want);
  as_buf_free(&sql);
  as_cols_free(&c);
}

static void one_row(as_cols_t *c) {
  as_cols_str(c, A_ID, "x");
  as_cols_int(c, A_QTY, 1);
  as_cols_bool(c, A_OK, true);
}

static void short_column(as_cols_t *c) {
  one_row(c);
  as_cols_str(c, A_ID, "y");
}

static void outside(as_cols_t *c) {
  one_row(c);
  as_cols_int(c, 3, 1);
}

static const as_bulk_t unused = AS_BULK("SELECT {{$case_id}}, {{$ok}}", a_cols);
static const as_bulk_t no_such_set = AS_BULK("SELECT * FROM {{u}}, {{v}}", a_cols);
static const as_bulk_t no_such_column = AS_BULK("SELECT * FROM {{u}} WHERE {{$nope}}", a_cols);
static const as_col_t hole_cols[3] = {[0] = {"a", "text"}, [2] = {"c", "text"}};
static const as_bulk_t hole = AS_BULK("SELECT * FROM {{u}}", hole_cols);

AS_TEST(disagreements_are_refused) {
  refused(&a_sql, short_column, "column \"case_id\" has 2 values, \"quantity\" 1");
  refused(&a_sql, outside, "a value outside the column table");
  refused(&unused, one_row, "column \"quantity\" not used by the text");
  refused(&no_such_set, one_row, "no column in set \"v\"");
  refused(&no_such_column, one_row, "no column \"nope\"");
  refused(&hole, one_row, "column 1 has no name or type");
}

/* Another statement needs the same column table. */
AS_TEST(another_table_is_refused) {
  as_cols_t c;
  as_buf_t sql;
  const char *vals[AS_COLS_MAX];
  char err[200];

  as_cols_init(&c, &a_sql);
  one_row(&c);
  AS_CHECK_INT_EQ(bind_stmt(&c, &multi_sql, &sql, vals, err, sizeof err), -EINVAL);
  as_buf_free(&sql);
  as_cols_free(&c);
}

/* Nothing to write: nothing is sent (the connection is not even open). */
AS_TEST(empty_runs_nothing) {
  as_cols_t c;
  as_db_t db;
  PGresult *r = (PGresult *)&db;

  as_db_init(&db, "", "test_cols", NULL, NULL);
  as_cols_init(&c, &a_sql);
  AS_CHECK_INT_EQ(as_cols_run(&c, &db, &r), 0);
  AS_CHECK(r == NULL);
  as_cols_free(&c);
}

/* A refused statement says why in db->err, and nothing is sent. */
AS_TEST(refused_run_reports_in_db_err) {
  as_cols_t c;
  as_db_t db;

  as_db_init(&db, "", "test_cols", NULL, NULL);
  as_cols_init(&c, &a_sql);
  short_column(&c);
  AS_CHECK_INT_EQ(as_cols_run(&c, &db, NULL), -EINVAL);
  AS_CHECK(strstr(db.err, "has 2 values") != NULL);
  as_cols_free(&c);
}

/* Two sets of different lengths in one statement, on a real server. */
AS_TEST(two_sets_on_postgres) {
  as_test_pg_t pg;
  as_db_t db;
  as_cols_t c;
  PGresult *r = NULL;
  static const as_bulk_t count = AS_BULK(
      "SELECT (SELECT count(*) FROM {{r}}), (SELECT string_agg(l.case_id || ':' || l.qty || ':' || "
      "l.o, ','"
      " ORDER BY l.o) FROM {{l:o}}), cardinality({{$r.case_id}})",
      multi_cols);
  static const uint8_t bytes[] = {1, 2};

  as_test_pg_setup(&pg);
  as_db_init(&db, pg.dsn, "test_cols", pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  as_cols_init(&c, &count);
  as_cols_str(&c, L_CASE, "a\"b");
  as_cols_int(&c, L_QTY, 1);
  as_cols_str(&c, L_CASE, "c,d");
  as_cols_null(&c, L_QTY);
  for (int i = 0; i < 3; i++) {
    as_cols_str(&c, R_CASE, "r");
    as_cols_hex(&c, R_HEX, bytes, sizeof bytes);
  }
  int rc = as_cols_run(&c, &db, &r);
  if (rc != 0) fprintf(stderr, "# %s\n", db.err);
  AS_CHECK_INT_EQ(rc, 0);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0), "3");
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 1), "a\"b:1:1");
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 2), "3");
  PQclear(r);
  as_cols_free(&c);
  as_db_close(&db);
  as_test_pg_teardown(&pg);
}
