/* as_deadline: durable timers shared by all instances of a service. */
#include "as_deadline.h"

#include "as_cols.h"

#include <stdio.h>
#include <stdlib.h>

int as_deadline_set(as_tx_t *tx, const char *case_id, const char *kind, int64_t due_us) {
  char due[24];
  snprintf(due, sizeof due, "%lld", (long long)due_us);
  const char *vals[3] = {case_id, kind, due};
  return as_db_query(tx->db,
                     "INSERT INTO deadlines (case_id, kind, due_at) VALUES ($1, $2, "
                     "to_timestamp($3::bigint / 1e6))"
                     " ON CONFLICT (case_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at,"
                     " fired_at = NULL, cancelled_at = NULL",
                     3, vals, NULL);
}

enum { D_CASE, D_KIND, D_DUE };
static const as_col_t set_cols[] = {
    [D_CASE] = {"case_id", "text"},
    [D_KIND] = {"kind", "text"},
    [D_DUE] = {"due_us", "bigint"},
};
static const as_bulk_t sql_set_many = AS_BULK(
    "INSERT INTO deadlines (case_id, kind, due_at)"
    " SELECT u.case_id, u.kind, to_timestamp(u.due_us / 1e6) FROM {{u}}"
    " ON CONFLICT (case_id, kind) DO UPDATE SET due_at = EXCLUDED.due_at,"
    " fired_at = NULL, cancelled_at = NULL",
    set_cols);

int as_deadline_set_many(as_tx_t *tx, const char *const *case_ids, const char *const *kinds,
                         const int64_t *due_us, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_set_many);
  for (size_t i = 0; i < n; i++) {
    as_cols_str(&c, D_CASE, case_ids[i]);
    as_cols_str(&c, D_KIND, kinds[i]);
    as_cols_int(&c, D_DUE, due_us[i]);
  }
  int rc = as_cols_run(&c, tx->db, NULL);
  as_cols_free(&c);
  return rc;
}

int as_deadline_cancel(as_tx_t *tx, const char *case_id, const char *kind) {
  const char *vals[2] = {case_id, kind};
  return as_db_query(tx->db,
                     "UPDATE deadlines SET cancelled_at = now() WHERE case_id = $1 AND kind = $2"
                     " AND fired_at IS NULL AND cancelled_at IS NULL",
                     2, vals, NULL);
}

enum { C_CASE, C_KIND };
static const as_col_t cancel_cols[] = {
    [C_CASE] = {"case_id", "text"},
    [C_KIND] = {"kind", "text"},
};
static const as_bulk_t sql_cancel_many = AS_BULK(
    "UPDATE deadlines d SET cancelled_at = now() FROM {{u}} WHERE d.case_id = u.case_id"
    " AND d.kind = u.kind AND d.fired_at IS NULL AND d.cancelled_at IS NULL",
    cancel_cols);

int as_deadline_cancel_many(as_tx_t *tx, const char *const *case_ids, const char *const *kinds,
                            size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_cancel_many);
  for (size_t i = 0; i < n; i++) {
    as_cols_str(&c, C_CASE, case_ids[i]);
    as_cols_str(&c, C_KIND, kinds[i]);
  }
  int rc = as_cols_run(&c, tx->db, NULL);
  as_cols_free(&c);
  return rc;
}

int as_deadline_scan(as_tx_t *tx, int limit, as_deadline_fire_cb fire, void *arg) {
  char lim[16];
  snprintf(lim, sizeof lim, "%d", limit);
  const char *vals[1] = {lim};
  PGresult *r = NULL;
  int rc = as_db_query(
      tx->db,
      "SELECT id, case_id, kind, (extract(epoch FROM due_at) * 1e6)::bigint FROM deadlines"
      " WHERE due_at <= now() AND fired_at IS NULL AND cancelled_at IS NULL"
      " ORDER BY due_at LIMIT $1 FOR UPDATE SKIP LOCKED",
      1, vals, &r);
  int n = rc == 0 ? PQntuples(r) : 0;
  for (int i = 0; rc == 0 && i < n; i++) {
    rc = fire(arg, tx, PQgetvalue(r, i, 1), PQgetvalue(r, i, 2),
              strtoll(PQgetvalue(r, i, 3), NULL, 10));
    const char *id[1] = {PQgetvalue(r, i, 0)};
    if (rc == 0)
      rc = as_db_query(tx->db, "UPDATE deadlines SET fired_at = now() WHERE id = $1", 1, id, NULL);
  }
  PQclear(r);
  return rc < 0 ? rc : n;
}
