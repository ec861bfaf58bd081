/* intake_cols: the columns of one bulk statement, as PostgreSQL array
 * literals. Intake writes a batch's rows of one kind (order lines, case
 * lines, clocks ...) with a single INSERT ... SELECT FROM unnest($1, $2, ...)
 * so that a batch of 500 requests costs a handful of round trips. */
#include <errno.h>
#include <stdio.h>

#include "intake.h"

void intake_cols_init(intake_cols_t *c, int ncols) {
  c->n = ncols;
  c->rows = 0;
  for (int i = 0; i < ncols; i++) {
    as_buf_init(&c->b[i]);
    as_buf_arr_open(&c->b[i]);
  }
}

void intake_cols_free(intake_cols_t *c) {
  for (int i = 0; i < c->n; i++) as_buf_free(&c->b[i]);
  c->n = 0;
}

void intake_cols_str(intake_cols_t *c, int col, const char *s) { as_buf_arr_str(&c->b[col], s); }

void intake_cols_int(intake_cols_t *c, int col, long long v) {
  char num[24];
  int len = snprintf(num, sizeof num, "%lld", v);
  as_buf_arr_raw(&c->b[col], num, (size_t)len);
}

void intake_cols_null(intake_cols_t *c, int col) { as_buf_arr_raw(&c->b[col], "NULL", 4); }

void intake_cols_row(intake_cols_t *c) { c->rows++; }

const char *intake_sql(const intake_t *x, char *buf, size_t cap, const char *tmpl) {
  snprintf(buf, cap, tmpl, x->schema);
  return buf;
}

int intake_cols_params(intake_cols_t *c, const char **vals) {
  for (int i = 0; i < c->n; i++) {
    as_buf_arr_close(&c->b[i]);
    if (!as_buf_ok(&c->b[i])) return -ENOMEM;
    vals[i] = as_buf_str(&c->b[i]);
  }
  return 0;
}

int intake_cols_run(intake_cols_t *c, intake_t *x, as_tx_t *tx, const char *tmpl, PGresult **out) {
  if (out) *out = NULL;
  if (c->rows == 0) return 0;
  const char *vals[INTAKE_COLS_MAX];
  if (intake_cols_params(c, vals) < 0) return -ENOMEM;
  char sql[2048];
  return as_db_query(as_tx_db(tx), intake_sql(x, sql, sizeof sql, tmpl), c->n, vals, out);
}
