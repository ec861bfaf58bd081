/* as_cols: the columns of one bulk statement, as PostgreSQL array literals.
 *
 * A worker writes a batch's rows of one kind with a single
 * INSERT ... SELECT FROM unnest($1, $2, ...) (or UPDATE ... FROM unnest), so
 * that a batch of 500 messages costs a handful of round trips, not 500.
 * Each column is one array literal; append one value per column per row,
 * then count the row.
 *
 * Ownership: the columns own their buffers (as_cols_free); the pointers
 * as_cols_params hands out stay valid until the next append or free. */
#ifndef AS_COLS_H
#define AS_COLS_H

#include <stddef.h>

#include "as_buf.h"
#include "as_err.h"
#include "as_tx.h"

#define AS_COLS_MAX 32

typedef struct as_cols {
  as_buf_t b[AS_COLS_MAX];
  int n;
  size_t rows;
} as_cols_t;

void as_cols_init(as_cols_t *c, int ncols); /* ncols <= AS_COLS_MAX */
void as_cols_free(as_cols_t *c);
void as_cols_str(as_cols_t *c, int col, const char *s); /* NULL: SQL NULL */
void as_cols_int(as_cols_t *c, int col, long long v);
void as_cols_bool(as_cols_t *c, int col, int v);
void as_cols_null(as_cols_t *c, int col);
void as_cols_row(as_cols_t *c); /* counts a finished row */
/* Closes the arrays and points vals[0..n) at them; returns 0 or -ENOMEM. */
AS_MUST_CHECK int as_cols_params(as_cols_t *c, const char **vals);
/* Runs sql with the columns as $1..$n if any row was added; returns 0 (also
 * when there is no row: *out is then NULL), -ENOMEM or an as_db error. */
AS_MUST_CHECK int as_cols_run(as_cols_t *c, as_db_t *db, const char *sql, PGresult **out);

#endif
