/* logi_parcels: the tracking projection. One row of state per parcel
 * (carrier, tracking number) and every scan once: a batch's scans cost one
 * statement (scans inserted, the new ones folded per parcel into its row:
 * last status and time by scanned_at, not arrival; delivered time the
 * earliest "delivered" scan) and one that re-arms each moving parcel's
 * stall deadline (an UPDATE of its one row). Scans of a parcel not shipped
 * yet are kept on a row without an order, matched when OrderShipped comes.
 * The stall deadline fires through the runtime's scanner: a forward parcel
 * not delivered with no scan for the stall time opens one STALLED inquiry;
 * a scan while it is open closes it (TrackingNotice MOVING_AGAIN). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_deadline.h"
#include "as_log.h"
#include "logistics.h"

#define DIR(x) AFTERSALES__V1__PARCEL_DIRECTION__PARCEL_DIRECTION_##x
#define KIND(x) AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_##x
#define NOTICE(x) AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_##x

/* ---- OrderPlaced: who the buyer of an order is (for notices) */

enum { O_ORDER, O_BUYER };
static const as_col_t order_cols[] = {
    [O_ORDER] = {"order_id", "text"}, [O_BUYER] = {"buyer_id", "text"}};
static const as_bulk_t sql_orders =
    AS_BULK("INSERT INTO orders (order_id, buyer_id) SELECT * FROM {{u}} ON CONFLICT DO NOTHING",
            order_cols);

int logi_placed_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  (void)state;
  as_cols_t c;
  as_cols_init(&c, &sql_orders);
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__OrderPlaced *e = msgs[i]->env->order_placed;
    if (!as_envelope_id_ok(e->order_id) || !as_envelope_id_ok(e->buyer_id)) {
      as_tx_reject(msgs[i], "order placed: order or buyer id missing or unsafe");
      continue;
    }
    as_cols_str(&c, O_ORDER, e->order_id);
    as_cols_str(&c, O_BUYER, e->buyer_id);
  }
  int rc = as_cols_run(&c, as_tx_db(tx), NULL);
  as_cols_free(&c);
  return rc;
}

/* ---- the stall clock of one parcel */

static int arm_stall(logi_t *x, as_tx_t *tx, long long parcel_id, const char *carrier,
                     int64_t since_us) {
  char id[24];
  return as_deadline_set(tx, logi_i64(id, parcel_id), "stall",
                         since_us + logi_stall_us(x, carrier));
}

/* ---- OrderShipped: a forward parcel (matching scans that came first) */

static const char sql_shipped[] =
    "INSERT INTO parcels (carrier, tracking_number, direction, order_id, shipment_id, line_ids,"
    " quantities, shipped_at_us, expected_delivery_us)"
    " VALUES ($1, $2, 1, $3, $4, $5::text[], $6::int[], $7, $8)"
    " ON CONFLICT (carrier, tracking_number) DO UPDATE SET direction = 1,"
    " order_id = EXCLUDED.order_id, shipment_id = EXCLUDED.shipment_id,"
    " line_ids = EXCLUDED.line_ids, quantities = EXCLUDED.quantities,"
    " shipped_at_us = EXCLUDED.shipped_at_us, expected_delivery_us = EXCLUDED.expected_delivery_us"
    " RETURNING parcel_id, last_scan_us, delivered_at_us IS NOT NULL, scans";

/* The lines as two array literals (ids are [A-Za-z0-9._:-]: no quoting). */
static const char *lines_of(Aftersales__V1__LineRef *const *l, size_t n, char *ids, size_t idlen,
                            char *qty, size_t qlen) {
  size_t a = 0, b = 0;
  ids[a++] = '{', qty[b++] = '{';
  for (size_t i = 0; i < n; i++) {
    if (!as_envelope_id_ok(l[i]->line_id) || l[i]->quantity < 1) return "line id or quantity bad";
    int w = snprintf(ids + a, idlen - a, "%s%s", i ? "," : "", l[i]->line_id);
    int v = snprintf(qty + b, qlen - b, "%s%d", i ? "," : "", l[i]->quantity);
    if (w < 0 || v < 0 || (size_t)w >= idlen - a - 1 || (size_t)v >= qlen - b - 1)
      return "lines too long";
    a += (size_t)w, b += (size_t)v;
  }
  ids[a++] = '}', qty[b++] = '}';
  ids[a] = qty[b] = '\0';
  return NULL;
}

static const char *bad_shipped(const Aftersales__V1__OrderShipped *e) {
  if (!as_envelope_id_ok(e->order_id) || !as_envelope_id_ok(e->carrier) ||
      !as_envelope_id_ok(e->tracking_number) || !logi_opt_id_ok(e->shipment_id))
    return "order shipped: order id, carrier, tracking number or shipment id missing or unsafe";
  if (e->n_lines > LOGI_MAX_LINES) return "order shipped: more than 100 lines";
  if (e->shipped_at_us <= 0 || e->expected_delivery_us < 0)
    return "order shipped: shipped_at_us missing or expected_delivery_us negative";
  return NULL;
}

static int shipped(logi_t *x, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__OrderShipped *e = m->env->order_shipped;
  const char *bad = bad_shipped(e);
  char ids[LOGI_MAX_LINES * 66 + 4], qty[LOGI_MAX_LINES * 12 + 4];
  if (!bad) bad = lines_of(e->lines, e->n_lines, ids, sizeof ids, qty, sizeof qty);
  if (bad) return as_tx_reject(m, bad), 0;
  int64_t expected = e->expected_delivery_us
                         ? e->expected_delivery_us
                         : e->shipped_at_us + x->conf->delivery_days * LOGI_DAY_US;
  char at[24], exp[24];
  const char *v[8] = {e->carrier,
                      e->tracking_number,
                      e->order_id,
                      e->shipment_id,
                      ids,
                      qty,
                      logi_i64(at, e->shipped_at_us),
                      logi_i64(exp, expected)};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_shipped, 8, v, &r);
  if (rc) return rc;
  long long pid = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  int64_t last = PQgetisnull(r, 0, 1) ? 0 : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  bool delivered = PQgetvalue(r, 0, 2)[0] == 't';
  if (strtoll(PQgetvalue(r, 0, 3), NULL, 10) > 0) as_counter_add(x->scans_early, 1);
  PQclear(r);
  as_counter_add(x->shipments, 1);
  if (delivered) return 0;
  return arm_stall(x, tx, pid, e->carrier, last > e->shipped_at_us ? last : e->shipped_at_us);
}

int logi_shipped_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) rc = shipped(state, tx, msgs[i]);
  return rc;
}

/* ---- OrderDelivered: the order's forward parcel(s) delivered */

static const char sql_delivered[] =
    "UPDATE parcels SET delivered_at_us = LEAST(delivered_at_us, $3),"
    " proof = CASE WHEN $4 <> '' THEN $4 ELSE proof END"
    " WHERE order_id = $1 AND direction = 1 AND ($2 = '' OR shipment_id = $2)"
    " RETURNING parcel_id";

static int delivered(logi_t *x, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__OrderDelivered *e = m->env->order_delivered;
  if (!as_envelope_id_ok(e->order_id) || !logi_opt_id_ok(e->shipment_id) ||
      e->delivered_at_us <= 0 || !logi_text_ok(e->proof, LOGI_TEXT_MAX))
    return as_tx_reject(m,
                        "order delivered: ids unsafe, no time, or proof too long or has "
                        "control bytes"),
           0;
  char at[24];
  const char *v[4] = {e->order_id, e->shipment_id, logi_i64(at, e->delivered_at_us), e->proof};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_delivered, 4, v, &r);
  for (int i = 0; rc == 0 && i < PQntuples(r); i++)
    rc = as_deadline_cancel(tx, PQgetvalue(r, i, 0), "stall");
  PQclear(r);
  if (rc == 0) as_counter_add(x->deliveries, 1);
  return rc;
}

int logi_delivered_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) rc = delivered(state, tx, msgs[i]);
  return rc;
}

/* ---- TrackingScan: the hot path */

enum { S_CARRIER, S_TRACK, S_AT, S_STATUS, S_LOC, S_PROOF };
static const as_col_t scan_cols[] = {
    [S_CARRIER] = {"carrier", "text"},    [S_TRACK] = {"tracking_number", "text"},
    [S_AT] = {"scanned_at_us", "bigint"}, [S_STATUS] = {"status", "text"},
    [S_LOC] = {"location", "text"},       [S_PROOF] = {"proof", "text"},
};
/* The new scans (a repeat inserts nothing) folded per parcel: the latest
 * by scanned_at, the earliest delivered, the count; then one upsert of the
 * parcels. Rows come back per parcel touched. */
static const as_bulk_t sql_scans = AS_BULK(
    "WITH ins AS (INSERT INTO scans (carrier, tracking_number, scanned_at_us, status, location,"
    " proof) SELECT * FROM {{u}} ON CONFLICT DO NOTHING RETURNING *),"
    " agg AS (SELECT DISTINCT ON (carrier, tracking_number) carrier, tracking_number, status,"
    " location, proof, scanned_at_us, count(*) OVER w AS n,"
    " min(scanned_at_us) FILTER (WHERE status = 'delivered') OVER w AS deliv,"
    " max(proof) FILTER (WHERE status = 'delivered') OVER w AS dproof"
    " FROM ins WINDOW w AS (PARTITION BY carrier, tracking_number)"
    " ORDER BY carrier, tracking_number, scanned_at_us DESC, status DESC),"
    " up AS (INSERT INTO parcels AS p (carrier, tracking_number, last_status, last_location,"
    " last_scan_us, delivered_at_us, proof, scans)"
    " SELECT carrier, tracking_number, status, location, scanned_at_us, deliv,"
    " coalesce(dproof, ''), n FROM agg"
    " ON CONFLICT (carrier, tracking_number) DO UPDATE SET"
    " last_status = CASE WHEN p.last_scan_us IS NULL OR EXCLUDED.last_scan_us >= p.last_scan_us"
    " THEN EXCLUDED.last_status ELSE p.last_status END,"
    " last_location = CASE WHEN p.last_scan_us IS NULL OR EXCLUDED.last_scan_us >= p.last_scan_us"
    " THEN EXCLUDED.last_location ELSE p.last_location END,"
    " last_scan_us = GREATEST(p.last_scan_us, EXCLUDED.last_scan_us),"
    " delivered_at_us = LEAST(p.delivered_at_us, EXCLUDED.delivered_at_us),"
    " proof = CASE WHEN EXCLUDED.proof <> '' THEN EXCLUDED.proof ELSE p.proof END,"
    " scans = p.scans + EXCLUDED.scans"
    " RETURNING p.parcel_id, p.carrier, p.tracking_number, p.direction, p.order_id IS NOT NULL"
    " AS shipped, p.last_scan_us, p.delivered_at_us IS NOT NULL AS delivered,"
    " p.stalled_inquiry, p.last_status)"
    " SELECT up.*, agg.n, agg.deliv IS NOT NULL FROM up JOIN agg USING (carrier, tracking_number)",
    scan_cols);

static const char *bad_scan(const Aftersales__V1__TrackingScan *s) {
  if (!as_envelope_id_ok(s->carrier) || !as_envelope_id_ok(s->tracking_number))
    return "tracking scan: carrier or tracking number missing or unsafe";
  if (s->scanned_at_us <= 0) return "tracking scan: scanned_at_us missing";
  if (!s->status[0] || !logi_text_ok(s->status, 64) || !logi_text_ok(s->location, LOGI_TEXT_MAX) ||
      !logi_text_ok(s->proof, LOGI_TEXT_MAX))
    return "tracking scan: status missing, or status, location or proof too long or has control "
           "bytes";
  return NULL;
}

static const char sql_close_stalled[] =
    "WITH c AS (UPDATE inquiries SET closed_at_us = $2, closed_by = 'scan'"
    " WHERE inquiry_id = $1 AND closed_at_us IS NULL RETURNING order_id, carrier, tracking_number),"
    " p AS (UPDATE parcels SET stalled_inquiry = NULL WHERE stalled_inquiry = $1)"
    " SELECT c.order_id, c.carrier, c.tracking_number, coalesce(o.buyer_id, '')"
    " FROM c LEFT JOIN orders o USING (order_id)";

/* A scan came while the parcel's STALLED inquiry was open: it is resolved. */
static int moving_again(logi_t *x, as_tx_t *tx, const char *inquiry_id, const char *status,
                        int64_t last_us) {
  char now[24];
  const char *v[2] = {inquiry_id, logi_i64(now, as_now_us())};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_close_stalled, 2, v, &r);
  if (rc == 0 && PQntuples(r) == 1) {
    logi_ask_t a = {.order_id = PQgetvalue(r, 0, 0),
                    .carrier = PQgetvalue(r, 0, 1),
                    .tracking_number = PQgetvalue(r, 0, 2),
                    .buyer_id = PQgetvalue(r, 0, 3),
                    .last_status = status,
                    .last_scan_us = last_us};
    rc = as_deadline_cancel(tx, inquiry_id, "answer:parcel");
    if (rc == 0) rc = logi_notice(tx, NULL, &a, inquiry_id, NOTICE(MOVING_AGAIN));
    if (rc == 0) as_counter_add(x->stalls_resolved, 1);
  }
  PQclear(r);
  return rc;
}

/* Re-arms or cancels the stall deadline of every forward, shipped parcel
 * the batch moved: two statements however many parcels. */
static int clocks(logi_t *x, as_tx_t *tx, PGresult *r) {
  int rows = PQntuples(r);
  const char **ids = calloc((size_t)rows + 1, sizeof *ids),
             **kinds = calloc((size_t)rows + 1, sizeof *kinds);
  const char **cids = calloc((size_t)rows + 1, sizeof *cids);
  int64_t *due = calloc((size_t)rows + 1, sizeof *due);
  if (!ids || !kinds || !cids || !due)
    return free(ids), free(kinds), free(cids), free(due), -ENOMEM;
  size_t k = 0, c = 0;
  for (int i = 0; i < rows; i++) {
    if (atoi(PQgetvalue(r, i, 3)) != DIR(FORWARD) || PQgetvalue(r, i, 4)[0] != 't') continue;
    if (PQgetvalue(r, i, 6)[0] == 't') {
      if (PQgetvalue(r, i, 10)[0] == 't') cids[c++] = PQgetvalue(r, i, 0);
      continue;
    }
    ids[k] = PQgetvalue(r, i, 0);
    due[k++] = strtoll(PQgetvalue(r, i, 5), NULL, 10) + logi_stall_us(x, PQgetvalue(r, i, 1));
  }
  for (int i = 0; i < rows; i++) kinds[i] = "stall"; /* one kind for every row */
  int rc = k ? as_deadline_set_many(tx, ids, kinds, due, k) : 0;
  if (rc == 0 && c) rc = as_deadline_cancel_many(tx, cids, kinds, c);
  free(ids), free(kinds), free(cids), free(due);
  return rc;
}

int logi_scans_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  logi_t *x = state;
  as_cols_t c;
  as_cols_init(&c, &sql_scans);
  size_t given = 0;
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__TrackingScan *s = msgs[i]->env->tracking_scan;
    const char *bad = bad_scan(s);
    if (bad) {
      as_tx_reject(msgs[i], bad);
      continue;
    }
    as_cols_str(&c, S_CARRIER, s->carrier);
    as_cols_str(&c, S_TRACK, s->tracking_number);
    as_cols_int(&c, S_AT, s->scanned_at_us);
    as_cols_str(&c, S_STATUS, s->status);
    as_cols_str(&c, S_LOC, s->location);
    as_cols_str(&c, S_PROOF, s->proof);
    given++;
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, as_tx_db(tx), &r);
  as_cols_free(&c);
  if (rc || !r) return rc;
  long long fresh = 0;
  for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
    fresh += strtoll(PQgetvalue(r, i, 9), NULL, 10);
    if (!PQgetisnull(r, i, 7))
      rc = moving_again(x, tx, PQgetvalue(r, i, 7), PQgetvalue(r, i, 8),
                        strtoll(PQgetvalue(r, i, 5), NULL, 10));
  }
  if (rc == 0) rc = clocks(x, tx, r);
  PQclear(r);
  as_counter_add(x->scans, (uint64_t)fresh);
  as_counter_add(x->scans_repeated, given - (size_t)fresh);
  return rc;
}

/* ---- the stall deadline fired: ask the carrier where the parcel is */

static const char sql_stalled[] =
    "SELECT p.carrier, p.tracking_number, p.order_id, coalesce(p.shipment_id, ''),"
    " coalesce(p.last_status, ''), coalesce(p.last_scan_us, 0), coalesce(o.buyer_id, ''),"
    " p.stall_inquiries + 1"
    " FROM parcels p LEFT JOIN orders o USING (order_id) WHERE p.parcel_id = $1"
    " AND p.direction = 1 AND p.order_id IS NOT NULL AND p.delivered_at_us IS NULL"
    " AND p.stalled_inquiry IS NULL FOR UPDATE OF p";

int logi_timers_stall(void *state, as_tx_t *tx, const char *parcel_id, const char *kind,
                      int64_t due_us) {
  (void)kind, (void)due_us;
  logi_t *x = state;
  const char *v[1] = {parcel_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_stalled, 1, v, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc; /* delivered or asked meanwhile */
  logi_ask_t a = {.kind = KIND(STALLED),
                  .direction = DIR(FORWARD),
                  .case_id = "",
                  .carrier = PQgetvalue(r, 0, 0),
                  .tracking_number = PQgetvalue(r, 0, 1),
                  .order_id = PQgetvalue(r, 0, 2),
                  .shipment_id = PQgetvalue(r, 0, 3),
                  .last_status = PQgetvalue(r, 0, 4),
                  .last_scan_us = strtoll(PQgetvalue(r, 0, 5), NULL, 10),
                  .buyer_id = PQgetvalue(r, 0, 6),
                  .parcel_id = strtoll(parcel_id, NULL, 10),
                  .ordinal = atoi(PQgetvalue(r, 0, 7)), /* no look at older inquiries */
                  .notice = NOTICE(STALLED)};
  char id[AS_UUID_STRLEN + 1];
  rc = logi_inquiry_open(x, tx, NULL, &a, id);
  const char *u[2] = {parcel_id, id};
  if (rc == 0)
    rc = as_db_query(as_tx_db(tx),
                     "UPDATE parcels SET stalled_inquiry = $2,"
                     " stall_inquiries = stall_inquiries + 1 WHERE parcel_id = $1",
                     2, u, NULL);
  if (rc == 0)
    AS_INFO(x->log, "parcel stalled: carrier asked", AS_F_STR("inquiry_id", id),
            AS_F_STR("carrier", a.carrier));
  PQclear(r);
  return rc;
}
