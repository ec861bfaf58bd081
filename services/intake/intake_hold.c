/* intake_hold: requests for an order the projection has not seen yet.
 *
 * Order events and requests travel on different topics, so a request can
 * overtake its order. Such a request is held: its original envelope bytes
 * are stored and a deadline "hold:<request id>" (on the order id) is set.
 * A request for an order placed but not paid yet is held the same way.
 * When an OrderPlaced or OrderPaid leaves the order both placed and paid,
 * the held requests of that order are taken (DELETE ... RETURNING, so
 * exactly one transaction gets each) and replayed through the pipeline in
 * the same transaction, and their deadlines cancelled. When a deadline
 * fires first, the request is replayed with holding forbidden: unknown_order
 * or order_not_paid, unless the order came meanwhile. The time the request
 * first arrived is kept with it (the vouched submission time may fall back
 * on it). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "intake.h"

enum { ST_REQUEST, ST_ORDER, ST_BUYER, ST_KEY, ST_ENVELOPE, ST_ARRIVED };
static const as_col_t store_cols[] = {
    [ST_REQUEST] = {"request_id", "text"},    [ST_ORDER] = {"order_id", "text"},
    [ST_BUYER] = {"buyer_id", "text"},        [ST_KEY] = {"idempotency_key", "text"},
    [ST_ENVELOPE] = {"envelope_hex", "text"}, [ST_ARRIVED] = {"arrived_us", "bigint"},
};
static const as_bulk_t sql_store = AS_BULK(
    "INSERT INTO held_requests (request_id, order_id, buyer_id, idempotency_key, envelope, "
    "arrived_us)"
    " SELECT u.request_id, u.order_id, u.buyer_id, u.idempotency_key, decode(u.envelope_hex, "
    "'hex'),"
    " u.arrived_us FROM {{u}} ON CONFLICT DO NOTHING"
    " RETURNING request_id, order_id",
    store_cols);
/* Columns of a taken row: request_id, order_id, envelope (hex), arrival. */
#define HELD_COLS                                        \
  "h.request_id, h.order_id, encode(h.envelope, 'hex')," \
  " coalesce(h.arrived_us, (extract(epoch FROM h.held_at) * 1e6)::bigint)"
static const as_col_t take_cols[] = {[INTAKE_READY_ORDER] = {"order_id", "text"}};
const as_bulk_t intake_hold_take = AS_BULK(
    "DELETE FROM held_requests h USING orders o WHERE h.order_id = ANY({{$order_id}})"
    " AND o.order_id = h.order_id AND o.placed_at_us IS NOT NULL AND o.amount_paid_minor IS NOT "
    "NULL"
    " RETURNING " HELD_COLS,
    take_cols);
static const char sql_take_one[] =
    "DELETE FROM held_requests h WHERE h.request_id = $1 AND h.order_id = $2 RETURNING " HELD_COLS;

static void kind_of(char *buf, size_t cap, const char *request_id) {
  snprintf(buf, cap, "hold:%s", request_id);
}

static int set_deadlines(intake_t *x, as_tx_t *tx, PGresult *r) {
  int rc = 0;
  int64_t due = as_now_us() + x->conf->hold_ms * 1000;
  for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
    char kind[80];
    kind_of(kind, sizeof kind, PQgetvalue(r, i, 0));
    rc = as_deadline_set(tx, PQgetvalue(r, i, 1), kind, due);
    as_counter_add(x->held, 1);
  }
  return rc;
}

int intake_hold_store(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_store);
  for (size_t i = 0; i < n; i++) {
    const intake_req_t *q = &reqs[i];
    if (q->fate != INTAKE_R_HOLD) continue;
    as_cols_str(&c, ST_REQUEST, q->r->request_id);
    as_cols_str(&c, ST_ORDER, q->r->order_id);
    as_cols_str(&c, ST_BUYER, q->r->buyer_id);
    as_cols_str(&c, ST_KEY, q->r->idempotency_key);
    as_cols_hex(&c, ST_ENVELOPE, q->bytes, q->nbytes);
    as_cols_int(&c, ST_ARRIVED, q->arrived_us);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, as_tx_db(tx), &r);
  if (rc == 0 && r) rc = set_deadlines(x, tx, r);
  PQclear(r);
  as_cols_free(&c);
  return rc;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

/* Decodes one held row into q (owning *env and *bytes); false if unusable. */
static bool load_row(PGresult *r, int row, as_envelope_t **env, uint8_t **bytes, size_t *len) {
  const char *hex = PQgetvalue(r, row, 2);
  size_t n = strlen(hex) / 2;
  *bytes = malloc(n ? n : 1);
  if (!*bytes) return false;
  for (size_t i = 0; i < n; i++)
    (*bytes)[i] = (uint8_t)(hexval(hex[2 * i]) << 4 | hexval(hex[2 * i + 1]));
  *len = n;
  const char *reason = NULL;
  char detail[200];
  *env = as_envelope_decode(*bytes, n, &reason, detail, sizeof detail);
  return *env && (*env)->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_AFTERSALES_REQUESTED;
}

int intake_hold_replay(intake_t *x, as_tx_t *tx, PGresult *r, bool final) {
  size_t n = (size_t)PQntuples(r);
  if (n == 0) return 0;
  intake_req_t *reqs = calloc(n, sizeof *reqs);
  as_msg_t *msgs = calloc(n, sizeof *msgs);
  uint8_t **bytes = calloc(n, sizeof *bytes);
  int rc = (reqs && msgs && bytes) ? 0 : -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    size_t len = 0;
    if (!load_row(r, (int)i, &msgs[k].env, &bytes[k], &len)) {
      AS_ERROR(x->log, "held request unreadable; dropped",
               AS_F_STR("request_id", PQgetvalue(r, (int)i, 0)));
      as_envelope_free(msgs[k].env);
      free(bytes[k]);
      msgs[k].env = NULL;
      bytes[k] = NULL;
      continue;
    }
    reqs[k] = (intake_req_t){.cause = &msgs[k],
                             .r = msgs[k].env->aftersales_requested,
                             .bytes = bytes[k],
                             .nbytes = len,
                             .final = final,
                             .arrived_us = strtoll(PQgetvalue(r, (int)i, 3), NULL, 10)};
    k++;
  }
  if (rc == 0) rc = intake_requests_run(x, tx, reqs, k);
  for (size_t i = 0; msgs && bytes && i < n; i++) {
    as_envelope_free(msgs[i].env);
    free(bytes[i]);
  }
  free(reqs);
  free(msgs);
  free(bytes);
  return rc;
}

static int cancel_deadlines(as_tx_t *tx, PGresult *r) {
  int rc = 0;
  for (int i = 0; rc == 0 && i < PQntuples(r); i++) {
    char kind[80];
    kind_of(kind, sizeof kind, PQgetvalue(r, i, 0));
    rc = as_deadline_cancel(tx, PQgetvalue(r, i, 1), kind);
  }
  return rc;
}

int intake_hold_release(intake_t *x, as_tx_t *tx, as_cols_t *ready) {
  PGresult *r = NULL;
  int rc = as_cols_run(ready, as_tx_db(tx), &r);
  if (rc == 0 && r) rc = cancel_deadlines(tx, r);
  if (rc == 0 && r) rc = intake_hold_replay(x, tx, r, true);
  PQclear(r);
  return rc;
}

int intake_hold_expire(void *state, as_tx_t *tx, const char *order_id, const char *kind,
                       int64_t due_us) {
  (void)due_us;
  intake_t *x = state;
  const char *vals[2] = {kind + strlen("hold:"), order_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_take_one, 2, vals, &r);
  if (rc == 0) rc = intake_hold_replay(x, tx, r, true);
  PQclear(r);
  return rc;
}
