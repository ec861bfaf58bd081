/* as_cols: bulk statements whose columns are named, and their values.
 *
 * A worker writes a batch's rows of one kind with a single statement over
 * unnest($1::text[], $2::bigint[], ...), one array parameter per column
 * (binary for the common types, see as_cols_str), so that a batch of 500
 * messages costs a handful of round trips, not 500. Each statement has one
 * static column table (as_col_t: a name and the SQL element type), written
 * with designated initializers from an enum
 * ([P_ID] = {"probe_id", "text"}); the code appends by that enum and the
 * statement's text names columns only, never a position:
 *
 *   {{u}}      unnest($1::text[], $2::bigint[]) AS u(probe_id, seq): every
 *              column of set u, in table order, as a row source
 *   {{u:o}}    the same WITH ORDINALITY, the ordinal column named o
 *   {{$name}}  one column as an array parameter ($3::text[]), e.g. for
 *              "= ANY({{$case_id}})"
 *
 * A column "l.case_id" belongs to set l (a statement with several unnests
 * of different lengths has one set per unnest), a plain "case_id" to set u.
 * The $n, the casts and the parameter count are written from the table, so
 * position and count cannot disagree. A column the text never names, a
 * name the table lacks, an index outside the table, or a set whose columns
 * got different numbers of values fails the statement with -EINVAL (the
 * reason in db->err) before anything is sent.
 *
 * Ownership: statements and column tables are static; as_cols_t owns its
 * buffers (as_cols_free). */
#ifndef AS_COLS_H
#define AS_COLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_db.h"
#include "as_err.h"

#define AS_COLS_MAX 48

typedef struct as_col {
  const char *name; /* "case_id" (set u) or "l.case_id" (set l) */
  const char *type; /* SQL element type: "text", "bigint", "int", "bool", "uuid", "jsonb" */
} as_col_t;

typedef struct as_bulk {
  const char *sql;      /* the text with {{set}}, {{set:ord}} and {{$name}} */
  const as_col_t *cols; /* static */
  int ncols;
} as_bulk_t;

/* A statement from its text and its column table (an array, not a pointer). */
#define AS_BULK(sql_, cols_) \
  { (sql_), (cols_), (int)(sizeof(cols_) / sizeof((cols_)[0])) }

typedef struct as_cols {
  const as_bulk_t *stmt; /* borrowed */
  as_buf_t b[AS_COLS_MAX];
  int n;                                    /* columns in use */
  uint32_t oid[AS_COLS_MAX];                /* element type of a binary column, 0: a text literal */
  int lens[AS_COLS_MAX], fmts[AS_COLS_MAX]; /* per parameter, for the binary ones */
  bool closed, bad;                         /* arrays closed by a bind; a value went astray */
  const char *why;                          /* static: what went astray, for the error */
} as_cols_t;

void as_cols_init(as_cols_t *c, const as_bulk_t *stmt);
void as_cols_free(as_cols_t *c);
void as_cols_reset(as_cols_t *c); /* no values again; memory kept */

/* Appends one value to column col (an index of the statement's table).
 * Columns of the types text, bigint, int, bool, uuid, bytea and jsonb are
 * sent as binary arrays (as_buf_bin_*): no quoting here, no parsing on the
 * server; any other type as an array literal. A value the column's type
 * cannot hold (a string that is not a UUID for a uuid column, 2^31 for an
 * int) fails the statement with -EINVAL before anything is sent. */
void as_cols_str(as_cols_t *c, int col, const char *s); /* NULL: SQL NULL */
void as_cols_int(as_cols_t *c, int col, long long v);
void as_cols_bool(as_cols_t *c, int col, bool v);
void as_cols_null(as_cols_t *c, int col);
void as_cols_hex(as_cols_t *c, int col, const uint8_t *p, size_t n); /* for decode(col, 'hex') */
/* For a "bytea" column: the bytes as they are. */
void as_cols_bytes(as_cols_t *c, int col, const void *p, size_t n);

/* The most values any column holds (0: nothing to write). */
size_t as_cols_rows(const as_cols_t *c);

/* Writes the statement's text into sql (appending) and points vals[0..ncols)
 * at the closed arrays. Returns the parameter count, -ENOMEM, or -EINVAL
 * with the reason in err. */
AS_MUST_CHECK int as_cols_bind(as_cols_t *c, const as_bulk_t *stmt, as_buf_t *sql,
                               const char **vals, char *err, size_t errlen);

/* Runs the statement with the columns if any column holds a value; returns
 * 0 (also when there is none: *out is then NULL), -ENOMEM, -EINVAL or an
 * as_db error. */
AS_MUST_CHECK int as_cols_run(as_cols_t *c, as_db_t *db, PGresult **out);

/* The same with another statement over the same column table (the values
 * of one batch read twice). */
int as_cols_run_stmt(as_cols_t *c, const as_bulk_t *stmt, as_db_t *db, PGresult **out);

#endif
