/* as_cols: array-literal columns for bulk statements (see as_cols.h). */
#include "as_cols.h"

#include <errno.h>
#include <stdio.h>

void as_cols_init(as_cols_t *c, int ncols) {
  c->n = ncols;
  c->rows = 0;
  for (int i = 0; i < ncols; i++) {
    as_buf_init(&c->b[i]);
    as_buf_arr_open(&c->b[i]);
  }
}

void as_cols_free(as_cols_t *c) {
  for (int i = 0; i < c->n; i++) as_buf_free(&c->b[i]);
  c->n = 0;
}

void as_cols_str(as_cols_t *c, int col, const char *s) {
  if (s)
    as_buf_arr_str(&c->b[col], s);
  else
    as_buf_arr_raw(&c->b[col], "NULL", 4);
}

void as_cols_int(as_cols_t *c, int col, long long v) {
  char num[24];
  int len = snprintf(num, sizeof num, "%lld", v);
  as_buf_arr_raw(&c->b[col], num, (size_t)len);
}

void as_cols_bool(as_cols_t *c, int col, int v) { as_buf_arr_raw(&c->b[col], v ? "t" : "f", 1); }

void as_cols_null(as_cols_t *c, int col) { as_buf_arr_raw(&c->b[col], "NULL", 4); }

void as_cols_row(as_cols_t *c) { c->rows++; }

int as_cols_params(as_cols_t *c, const char **vals) {
  for (int i = 0; i < c->n; i++) {
    as_buf_arr_close(&c->b[i]);
    if (!as_buf_ok(&c->b[i])) return -ENOMEM;
    vals[i] = as_buf_str(&c->b[i]);
  }
  return 0;
}

int as_cols_run(as_cols_t *c, as_db_t *db, const char *sql, PGresult **out) {
  if (out) *out = NULL;
  if (c->rows == 0) return 0;
  const char *vals[AS_COLS_MAX];
  if (as_cols_params(c, vals) < 0) return -ENOMEM;
  return as_db_query(db, sql, c->n, vals, out);
}
