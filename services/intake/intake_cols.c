/* intake_cols: intake's bulk statements. Intake writes a batch's rows of
 * one kind (order lines, case lines, clocks ...) with a single
 * INSERT ... SELECT FROM unnest($1, $2, ...) built with as_cols, so that a
 * batch of 500 requests costs a handful of round trips; this adds the
 * schema to the statement. */
#include <stdio.h>

#include "intake.h"

const char *intake_sql(const intake_t *x, char *buf, size_t cap, const char *tmpl) {
  snprintf(buf, cap, tmpl, x->schema);
  return buf;
}

int intake_cols_run(as_cols_t *c, intake_t *x, as_tx_t *tx, const char *tmpl, PGresult **out) {
  char sql[2048];
  return as_cols_run(c, as_tx_db(tx), intake_sql(x, sql, sizeof sql, tmpl), out);
}
