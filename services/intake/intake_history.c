/* intake_history: the buyer's history a CaseOpened carries (BuyerHistory),
 * for a whole batch with one statement.
 *
 * Orders and tenure come from the order projection (orders placed by the
 * buyer, the first one's time; index orders_buyer); cases and claims on the
 * order from cases.cases (index on buyer_id): two index lookups per
 * (buyer, order) of the batch. The statement
 * runs after the batch's cases are inserted, in the same transaction, so
 * its counts include them; each request then subtracts the cases of the
 * batch that come at or after it (the batch's order is the order the
 * requests arrived in), which leaves exactly the cases opened before it:
 * several requests of one buyer in one batch count each other in order.
 *
 * Counts see what was committed when the statement ran. Requests are keyed
 * by order id, so one order's requests are handled in order by one
 * instance and claims_on_order is exact; one buyer's requests on different
 * orders may be handled by two instances at the same moment, and then
 * neither counts the other's case (a case opened a few milliseconds
 * earlier elsewhere; the next case of that buyer sees both). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "intake.h"

/* One row per distinct (buyer, order) of the batch: the buyer's orders
 * and first order time, the buyer's cases and those on the order. Cases on
 * an order are cases of its buyer (a request on another buyer's order is
 * refused), so one index lookup by buyer gives both counts. Sorted in byte
 * order for the binary search below. */
enum { X_BUYER, X_ORDER };
static const as_col_t history_cols[] = {
    [X_BUYER] = {"x.buyer_id", "text"}, [X_ORDER] = {"x.order_id", "text"}};
static const as_bulk_t sql_history = AS_BULK(
    "SELECT u.buyer_id, u.order_id, o.n, coalesce(o.f, 0), c.n, c.on_order"
    " FROM (SELECT DISTINCT x.buyer_id, x.order_id FROM {{x}}) u,"
    " LATERAL (SELECT count(*) AS n, min(placed_at_us) AS f FROM orders"
    " WHERE buyer_id = u.buyer_id AND placed_at_us IS NOT NULL) o,"
    " LATERAL (SELECT count(*) AS n, count(*) FILTER (WHERE order_id = u.order_id) AS on_order"
    " FROM cases.cases WHERE buyer_id = u.buyer_id) c"
    " ORDER BY u.buyer_id COLLATE \"C\", u.order_id COLLATE \"C\"",
    history_cols);

enum { H_BUYER, H_ORDER, H_ORDERS, H_FIRST, H_CASES, H_ON_ORDER };

/* The first row whose (buyer[, order]) is not below the key. */
static int lower_bound(PGresult *r, const char *buyer, const char *order) {
  int lo = 0, hi = PQntuples(r);
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(PQgetvalue(r, mid, H_BUYER), buyer);
    if (c == 0 && order) c = strcmp(PQgetvalue(r, mid, H_ORDER), order);
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo;
}

static bool row_is(PGresult *r, int row, const char *buyer, const char *order) {
  return row < PQntuples(r) && strcmp(PQgetvalue(r, row, H_BUYER), buyer) == 0 &&
         strcmp(PQgetvalue(r, row, H_ORDER), order) == 0;
}

static int32_t count_at(PGresult *r, int row, int col) {
  return (int32_t)strtol(PQgetvalue(r, row, col), NULL, 10);
}

/* Walks the batch backwards: later[b] counts the batch's cases of buyer b
 * (slot: the buyer's first row) and later[p] those on the order of pair p,
 * at or after the current request. */
static int apply(intake_req_t *reqs, size_t n, PGresult *r) {
  int rows = PQntuples(r);
  int32_t *later_b = calloc(rows ? (size_t)rows : 1, sizeof *later_b);
  int32_t *later_o = calloc(rows ? (size_t)rows : 1, sizeof *later_o);
  int rc = later_b && later_o ? 0 : -ENOMEM;
  for (size_t i = n; rc == 0 && i-- > 0;) {
    intake_req_t *q = &reqs[i];
    if (q->fate != INTAKE_R_OPEN) continue;
    int b = lower_bound(r, q->r->buyer_id, NULL),
        p = lower_bound(r, q->r->buyer_id, q->r->order_id);
    if (!row_is(r, p, q->r->buyer_id, q->r->order_id)) continue; /* every pair was asked for */
    intake_history_t *h = &q->history;
    h->orders = count_at(r, p, H_ORDERS);
    h->first_order_at_us = strtoll(PQgetvalue(r, p, H_FIRST), NULL, 10);
    h->cases = count_at(r, p, H_CASES) - ++later_b[b];
    h->claims_on_order = count_at(r, p, H_ON_ORDER) - ++later_o[p];
    if (h->cases < 0) h->cases = 0;
    if (h->claims_on_order < 0) h->claims_on_order = 0;
  }
  free(later_o);
  free(later_b);
  return rc;
}

int intake_history_fill(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  (void)x;
  as_cols_t c;
  as_cols_init(&c, &sql_history);
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_OPEN) {
      as_cols_str(&c, X_BUYER, reqs[i].r->buyer_id);
      as_cols_str(&c, X_ORDER, reqs[i].r->order_id);
    }
  /* (Sessions run without JIT, see as_db.c: this statement's estimates on
   * freshly filled tables used to trigger a 10-20 ms compile.) */
  int rc = 0;
  PGresult *r = NULL;
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(tx), &r);
  if (rc == 0 && r) rc = apply(reqs, n, r);
  PQclear(r);
  as_cols_free(&c);
  return rc;
}
