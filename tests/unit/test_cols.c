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

/* A binary array parameter (as_buf_bin_*) written back as a readable
 * literal: {"text",12,t,NULL}; element types from the header. */
static const char *show(const as_cols_t *c, const char *const *vals, int col) {
  static char out[512];
  const uint8_t *p = (const uint8_t *)vals[col];
  size_t len = (size_t)c->lens[col], o = 0;
  if (!c->fmts[col]) return vals[col];
  uint32_t oid = (uint32_t)p[8] << 24 | (uint32_t)p[9] << 16 | (uint32_t)p[10] << 8 | p[11];
  uint32_t n = (uint32_t)p[12] << 24 | (uint32_t)p[13] << 16 | (uint32_t)p[14] << 8 | p[15];
  size_t at = 20;
  o += (size_t)snprintf(out + o, sizeof out - o, "{");
  for (uint32_t i = 0; i < n && at + 4 <= len; i++) {
    int32_t el = (int32_t)((uint32_t)p[at] << 24 | (uint32_t)p[at + 1] << 16 |
                           (uint32_t)p[at + 2] << 8 | p[at + 3]);
    at += 4;
    if (i) o += (size_t)snprintf(out + o, sizeof out - o, ",");
    if (el < 0) {
      o += (size_t)snprintf(out + o, sizeof out - o, "NULL");
      continue;
    }
    long long v = 0;
    for (int32_t k = 0; k < el && (oid == AS_OID_INT8 || oid == AS_OID_INT4); k++)
      v = (long long)((unsigned long long)v << 8 | p[at + (size_t)k]);
    if (oid == AS_OID_INT4) v = (int32_t)v;
    if (oid == AS_OID_INT8 || oid == AS_OID_INT4)
      o += (size_t)snprintf(out + o, sizeof out - o, "%lld", v);
    else if (oid == AS_OID_BOOL)
      o += (size_t)snprintf(out + o, sizeof out - o, "%c", p[at] ? 't' : 'f');
    else
      o += (size_t)snprintf(out + o, sizeof out - o, "\"%.*s\"", el, (const char *)p + at);
    at += (size_t)el;
  }
  snprintf(out + o, sizeof out - o, "}");
  return out;
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
  AS_CHECK_STR_EQ(show(&c, vals, A_ID), "{\"c-1\",\"say \"hi\" \\ ,{}\"}");
  AS_CHECK_STR_EQ(show(&c, vals, A_QTY), "{2,NULL}");
  AS_CHECK_STR_EQ(show(&c, vals, A_OK), "{t,f}");
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
  AS_CHECK_STR_EQ(show(&c, vals, L_QTY), "{0,1,2}");
  AS_CHECK_STR_EQ(show(&c, vals, R_HEX), "{\"00ab10\"}");
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
  AS_CHECK_STR_EQ(show(&c, vals, A_ID), "{\"x\"}");
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
  AS_CHECK_STR_EQ(show(&c, vals, A_QTY), "{3}");
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

/* Every binary element type, NULLs among them, and a type sent as a text
 * literal (numeric), read back by the server as what was meant. */
enum { Y_TEXT, Y_BIG, Y_INT, Y_BOOL, Y_UUID, Y_JSON, Y_NUM, Y_BYTES };
static const as_col_t y_cols[] = {
    [Y_TEXT] = {"t", "text"},   [Y_BIG] = {"b", "bigint"},  [Y_INT] = {"i", "int"},
    [Y_BOOL] = {"o", "bool"},   [Y_UUID] = {"u", "uuid"},   [Y_JSON] = {"j", "jsonb"},
    [Y_NUM] = {"n", "numeric"}, [Y_BYTES] = {"y", "bytea"},
};
static const as_bulk_t y_sql = AS_BULK(
    "SELECT string_agg(concat_ws('|', coalesce(t, '-'), coalesce(b::text, '-'), coalesce(i::text, "
    "'-'), coalesce(o::text, '-'), coalesce(u::text, '-'), coalesce(j->>'k', '-'),"
    " coalesce(n::text, '-'), coalesce(encode(y, 'hex'), '-')), ';' ORDER BY ord)"
    " FROM {{u:ord}}",
    y_cols);

AS_TEST(every_type_on_postgres) {
  as_test_pg_t pg;
  as_db_t db;
  as_cols_t c;
  PGresult *r = NULL;

  as_test_pg_setup(&pg);
  as_db_init(&db, pg.dsn, "test_cols", pg.schema, NULL);
  AS_CHECK_INT_EQ(as_db_ensure(&db), 0);
  as_cols_init(&c, &y_sql);
  as_cols_str(&c, Y_TEXT, "\"q\" \\ {,} 退货");
  as_cols_int(&c, Y_BIG, INT64_MIN);
  as_cols_int(&c, Y_INT, INT32_MIN);
  as_cols_bool(&c, Y_BOOL, true);
  as_cols_str(&c, Y_UUID, "A1D6B285-F6CF-56A1-A505-0D3655A064FA");
  as_cols_str(&c, Y_JSON, "{\"k\": \"v\\u00e9\"}");
  as_cols_str(&c, Y_NUM, "12.50");
  as_cols_bytes(&c, Y_BYTES, "\0\1", 2);
  for (int k = Y_TEXT; k <= Y_NUM; k++) as_cols_null(&c, k);
  as_cols_bytes(&c, Y_BYTES, "", 0);
  as_cols_str(&c, Y_TEXT, "");
  as_cols_str(&c, Y_BIG, "-42");
  as_cols_int(&c, Y_INT, INT32_MAX);
  as_cols_str(&c, Y_BOOL, "f");
  as_cols_str(&c, Y_UUID, "a1d6b285f6cf56a1a5050d3655a064fa");
  as_cols_str(&c, Y_JSON, "{}");
  as_cols_int(&c, Y_NUM, 7);
  as_cols_null(&c, Y_BYTES);
  int rc = as_cols_run(&c, &db, &r);
  if (rc != 0) fprintf(stderr, "# %s\n", db.err);
  AS_CHECK_INT_EQ(rc, 0);
  AS_CHECK_STR_EQ(PQgetvalue(r, 0, 0),
                  "\"q\" \\ {,} 退货|-9223372036854775808|-2147483648|true|"
                  "a1d6b285-f6cf-56a1-a505-0d3655a064fa|vé|12.50|0001;"
                  "-|-|-|-|-|-|-|;"
                  "|-42|2147483647|false|a1d6b285-f6cf-56a1-a505-0d3655a064fa|-|7|-");
  PQclear(r);
  as_cols_free(&c);
  as_db_close(&db);
  as_test_pg_teardown(&pg);
}

/* A value its column's type cannot hold is refused before anything is
 * sent, with the reason. */
static void bad_uuid(as_cols_t *c) {
  as_cols_str(c, Y_UUID, "not-a-uuid");
}

static void int_overflow(as_cols_t *c) {
  as_cols_int(c, Y_INT, (long long)INT32_MAX + 1);
}

static void not_a_number(as_cols_t *c) {
  as_cols_str(c, Y_BIG, "12x");
}

static void bytes_into_text(as_cols_t *c) {
  as_cols_bytes(c, Y_TEXT, "a", 1);
}

AS_TEST(values_the_type_cannot_hold_are_refused) {
  refused(&y_sql, bad_uuid, "a string that is not a UUID");
  refused(&y_sql, int_overflow, "a number outside int's range");
  refused(&y_sql, not_a_number, "a string the column's type cannot hold");
  refused(&y_sql, bytes_into_text, "bytes for a column that is not bytea");
}
