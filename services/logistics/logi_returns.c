/* logi_returns: return parcels. ReturnInstructions (review) creates the
 * expected return; ReturnShipped (the buyer's carrier and tracking number)
 * links the parcel to the case and arms the return-transit clock; a
 * WarehouseReceipt is recorded once (its receipt_id) and matched by
 * tracking number, else by the case id on the label, against a case still
 * awaiting its return: ReturnReceived then carries only the units of the
 * case's claimed lines, capped at what was claimed (partial when fewer),
 * late when after the ship-by date. A receipt that matches nothing stays
 * in the exception queue (ReceiptUnmatched) until an agent's ReceiptLinked
 * releases it as if matched. The transit clock asks the carrier (inquiry
 * RETURN_TRANSIT); a carrier scan "delivered" is never a receipt. The
 * ship-by clock stays review's (a case move). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "logistics.h"

#define DIR(x) AFTERSALES__V1__PARCEL_DIRECTION__PARCEL_DIRECTION_##x
#define KIND(x) AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_##x
#define NOTICE(x) AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_##x

/* ---- ReturnInstructions */

static const char sql_expect[] =
    "INSERT INTO returns (case_id, warehouse_id, ship_by_us) VALUES ($1, $2, $3)"
    " ON CONFLICT (case_id) DO UPDATE SET warehouse_id = EXCLUDED.warehouse_id,"
    " ship_by_us = EXCLUDED.ship_by_us WHERE returns.received_at_us IS NULL";

int logi_on_instructions(void *state, as_tx_t *tx, as_msg_t *m) {
  (void)state;
  const Aftersales__V1__ReturnInstructions *e = m->env->return_instructions;
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->warehouse_id) || e->ship_by_us <= 0)
    return as_tx_reject(m,
                        "return instructions: case or warehouse id missing or unsafe, or no "
                        "ship-by date"),
           0;
  char by[24];
  const char *v[3] = {e->case_id, e->warehouse_id, logi_i64(by, e->ship_by_us)};
  return as_db_query(as_tx_db(tx), sql_expect, 3, v, NULL);
}

/* ---- ReturnShipped */

static int release_queued(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const char *case_id,
                          const char *tracking);

static const char sql_shipped[] =
    "UPDATE returns SET carrier = $2, tracking_number = $3, shipped_at_us = $4"
    " WHERE case_id = $1 AND received_at_us IS NULL RETURNING case_id";
static const char sql_parcel[] =
    "INSERT INTO parcels (carrier, tracking_number, direction, case_id, shipped_at_us)"
    " VALUES ($2, $3, 2, $1, $4) ON CONFLICT (carrier, tracking_number) DO UPDATE SET"
    " direction = 2, case_id = EXCLUDED.case_id, shipped_at_us = EXCLUDED.shipped_at_us";

int logi_on_return_shipped(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__ReturnShipped *e = m->env->return_shipped;
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->carrier) ||
      !as_envelope_id_ok(e->tracking_number))
    return as_tx_reject(m,
                        "return shipped: case id, carrier or tracking number missing or "
                        "unsafe"),
           0;
  int64_t at = e->shipped_at_us > 0 ? e->shipped_at_us : as_now_us();
  char at_s[24];
  const char *v[4] = {e->case_id, e->carrier, e->tracking_number, logi_i64(at_s, at)};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_shipped, 4, v, &r);
  bool known = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc) return rc;
  if (!known) return as_tx_reject(m, "unknown_return: no return awaited for this case"), 0;
  rc = as_db_query(as_tx_db(tx), sql_parcel, 4, v, NULL);
  if (rc == 0)
    rc =
        as_deadline_set(tx, e->case_id, "return_transit", at + x->conf->transit_days * LOGI_DAY_US);
  if (rc == 0) rc = release_queued(x, tx, m, e->case_id, e->tracking_number);
  return rc;
}

/* ---- matching a receipt to its case */

static const char sql_refresh[] = "SELECT count(*) FROM receipts WHERE case_id IS NULL";

static int refresh_queue(logi_t *x, as_tx_t *tx) {
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_refresh, 0, NULL, &r);
  if (rc == 0) as_gauge_set(x->exceptions, strtod(PQgetvalue(r, 0, 0), NULL));
  PQclear(r);
  return rc;
}

/* A receipt as matching needs it; strings borrowed (the proto, or the
 * queued row). ids and qty are its lines as array literals. */
typedef struct logi_rcpt {
  const char *id, *warehouse, *tracking, *condition, *ids, *qty;
  int64_t at;
} logi_rcpt_t;

/* A queued receipt's row (columns 1-6: warehouse, tracking number,
 * condition, received at, line ids, quantities), borrowed from q. */
static logi_rcpt_t queued_rcpt(const PGresult *q, const char *id) {
  return (logi_rcpt_t){.id = id,
                       .warehouse = PQgetvalue(q, 0, 1),
                       .tracking = PQgetvalue(q, 0, 2),
                       .condition = PQgetvalue(q, 0, 3),
                       .at = strtoll(PQgetvalue(q, 0, 4), NULL, 10),
                       .ids = PQgetvalue(q, 0, 5),
                       .qty = PQgetvalue(q, 0, 6)};
}

/* The return awaited (locked) and, per claimed line in order, the units
 * claimed and the receipt's counted units capped at them: one statement. */
static const char sql_check[] =
    "SELECT r.warehouse_id, r.ship_by_us, r.received_at_us IS NULL, c.order_id, e.line_id, e.qty,"
    " LEAST(coalesce(g.qty, 0), e.qty) FROM returns r JOIN cases c USING (case_id)"
    " CROSS JOIN LATERAL unnest(c.line_ids, c.quantities) WITH ORDINALITY AS e(line_id, qty, ord)"
    " LEFT JOIN unnest($2::text[], $3::int[]) AS g(line_id, qty) USING (line_id)"
    " WHERE r.case_id = $1 ORDER BY e.ord FOR UPDATE OF r";

/* Why receipt t cannot go to case_id, or NULL (*out then holds the rows
 * to publish; the caller PQclears it either way). */
static const char *check(as_tx_t *tx, const logi_rcpt_t *t, const char *case_id, PGresult **out,
                         int *rc) {
  const char *v[3] = {case_id, t->ids, t->qty};
  *rc = as_db_query(as_tx_db(tx), sql_check, 3, v, out);
  if (*rc) return NULL;
  if (PQntuples(*out) == 0) return "no_match";
  if (PQgetvalue(*out, 0, 2)[0] != 't') return "case_not_awaiting_return";
  for (int i = 0; i < PQntuples(*out); i++)
    if (atoi(PQgetvalue(*out, i, 6)) > 0) return NULL;
  return "no_expected_lines";
}

static int publish_received(as_tx_t *tx, const as_msg_t *cause, const logi_rcpt_t *t,
                            const char *case_id, const char *by, PGresult *r) {
  int n = PQntuples(r);
  Aftersales__V1__LineRef *got = calloc((size_t)n + 1, sizeof *got);
  Aftersales__V1__LineRef *exp = calloc((size_t)n + 1, sizeof *exp);
  Aftersales__V1__LineRef **gp = calloc((size_t)n + 1, sizeof *gp);
  Aftersales__V1__LineRef **ep = calloc((size_t)n + 1, sizeof *ep);
  if (!got || !exp || !gp || !ep) return free(got), free(exp), free(gp), free(ep), -ENOMEM;
  Aftersales__V1__ReturnReceived rr = AFTERSALES__V1__RETURN_RECEIVED__INIT;
  for (int i = 0; i < n; i++) {
    aftersales__v1__line_ref__init(&exp[i]);
    exp[i].line_id = PQgetvalue(r, i, 4);
    exp[i].quantity = atoi(PQgetvalue(r, i, 5));
    ep[rr.n_expected_lines++] = &exp[i];
    int q = atoi(PQgetvalue(r, i, 6));
    if (q < exp[i].quantity) rr.partial = true;
    if (q == 0) continue;
    aftersales__v1__line_ref__init(&got[rr.n_lines]);
    got[rr.n_lines].line_id = exp[i].line_id;
    got[rr.n_lines].quantity = q;
    gp[rr.n_lines] = &got[rr.n_lines];
    rr.n_lines++;
  }
  rr.lines = gp, rr.expected_lines = ep;
  rr.case_id = (char *)case_id;
  rr.warehouse_id = (char *)t->warehouse;
  rr.tracking_number = (char *)t->tracking;
  rr.condition = (char *)t->condition;
  rr.received_at_us = t->at;
  rr.late = t->at > strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  rr.receipt_id = (char *)t->id;
  rr.matched_by = (char *)by;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_RETURN_RECEIVED;
  env.return_received = &rr;
  int rc =
      logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, case_id, case_id, PQgetvalue(r, 0, 3), &env);
  free(got), free(exp), free(gp), free(ep);
  return rc;
}

static const char sql_matched[] =
    "WITH r AS (UPDATE returns SET received_at_us = $3, receipt_id = $2 WHERE case_id = $1)"
    " UPDATE receipts SET case_id = $1, matched_by = $4, released_by = NULLIF($5, '')"
    " WHERE receipt_id = $2";

/* Receipt t to case_id as matched by (tracking_number, label, agent). */
static int release(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const logi_rcpt_t *t,
                   const char *case_id, const char *by, const char *agent, PGresult *r) {
  char at[24];
  const char *v[5] = {case_id, t->id, logi_i64(at, t->at), by, agent ? agent : ""};
  int rc = as_db_query(as_tx_db(tx), sql_matched, 5, v, NULL);
  if (rc == 0) rc = as_deadline_cancel(tx, case_id, "return_transit");
  if (rc == 0) rc = publish_received(tx, cause, t, case_id, by, r);
  if (rc == 0) as_counter_add(agent ? x->receipts_released : x->receipts_matched, 1);
  return rc;
}

static const char sql_unmatched[] =
    "UPDATE receipts SET unmatched_reason = $2 WHERE receipt_id = $1";

static int unmatched(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const char *receipt_id,
                     const Aftersales__V1__WarehouseReceipt *e, const char *why) {
  const char *v[2] = {receipt_id, why};
  int rc = as_db_query(as_tx_db(tx), sql_unmatched, 2, v, NULL);
  Aftersales__V1__ReceiptUnmatched u = AFTERSALES__V1__RECEIPT_UNMATCHED__INIT;
  u.receipt_id = (char *)receipt_id;
  u.warehouse_id = e->warehouse_id;
  u.tracking_number = e->tracking_number;
  u.label_case_id = e->case_id;
  u.n_lines = e->n_lines;
  u.lines = e->lines;
  u.condition = e->condition;
  u.received_at_us = e->received_at_us;
  u.reason = (char *)why;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_RECEIPT_UNMATCHED;
  env.receipt_unmatched = &u;
  if (rc == 0)
    rc = logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, receipt_id, receipt_id, "", &env);
  if (rc == 0) as_counter_add(x->receipts_unmatched, 1);
  if (rc == 0) rc = refresh_queue(x, tx);
  if (rc == 0)
    AS_WARN(x->log, "warehouse receipt matched no return: queued for an agent",
            AS_F_STR("receipt_id", receipt_id), AS_F_STR("reason", why));
  return rc;
}

/* ---- WarehouseReceipt */

/* The receipt recorded once, and the return its tracking number belongs to
 * (the one still awaited first): one statement. */
static const char sql_record[] =
    "WITH ins AS (INSERT INTO receipts (receipt_id, warehouse_id, tracking_number, label_case_id,"
    " line_ids, quantities, condition, received_at_us) VALUES ($1, $2, $3, $4, $5::text[],"
    " $6::int[], $7, $8) ON CONFLICT (receipt_id) DO NOTHING RETURNING receipt_id)"
    " SELECT EXISTS (SELECT 1 FROM ins), (SELECT case_id FROM returns WHERE $3 <> ''"
    " AND tracking_number = $3 ORDER BY received_at_us IS NULL DESC LIMIT 1)";

static const char *bad_receipt(const Aftersales__V1__WarehouseReceipt *e, char *ids, size_t il,
                               char *qty, size_t ql) {
  if (!as_envelope_id_ok(e->warehouse_id) || !logi_opt_id_ok(e->tracking_number) ||
      !logi_opt_id_ok(e->case_id) || !logi_opt_id_ok(e->receipt_id))
    return "warehouse receipt: warehouse id missing, or tracking number, case id or receipt id "
           "unsafe";
  if (!logi_text_ok(e->condition, 64))
    return "warehouse receipt: condition too long or has control bytes";
  if (e->n_lines == 0 || e->n_lines > LOGI_MAX_LINES)
    return "warehouse receipt: no lines or more than 100";
  size_t a = 0, b = 0;
  ids[a++] = '{', qty[b++] = '{';
  for (size_t i = 0; i < e->n_lines; i++) {
    if (!as_envelope_id_ok(e->lines[i]->line_id) || e->lines[i]->quantity < 1 ||
        e->lines[i]->quantity > 100000)
      return "warehouse receipt: line id unsafe or quantity outside 1..100000";
    for (size_t k = 0; k < i; k++)
      if (strcmp(e->lines[k]->line_id, e->lines[i]->line_id) == 0)
        return "warehouse receipt: line named twice";
    a += (size_t)snprintf(ids + a, il - a, "%s%s", i ? "," : "", e->lines[i]->line_id);
    b += (size_t)snprintf(qty + b, ql - b, "%s%d", i ? "," : "", e->lines[i]->quantity);
  }
  ids[a++] = '}', qty[b++] = '}';
  ids[a] = qty[b] = '\0';
  return NULL;
}

/* Matched (by tracking number, else by the label) or queued. */
static int match(logi_t *x, as_tx_t *tx, const as_msg_t *m, const logi_rcpt_t *t,
                 const char *by_tracking, const Aftersales__V1__WarehouseReceipt *e) {
  const char *case_id = by_tracking ? by_tracking : e->case_id[0] ? e->case_id : NULL;
  const char *by = by_tracking ? "tracking_number" : "label";
  PGresult *r = NULL;
  int rc = 0;
  const char *why = case_id ? check(tx, t, case_id, &r, &rc) : "no_match";
  if (rc == 0 && why)
    rc = unmatched(x, tx, m, t->id, e, why);
  else if (rc == 0)
    rc = release(x, tx, m, t, case_id, by, NULL, r);
  PQclear(r);
  return rc;
}

int logi_on_receipt(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__WarehouseReceipt *e = m->env->warehouse_receipt;
  char ids[LOGI_MAX_LINES * 66 + 4], qty[LOGI_MAX_LINES * 12 + 4];
  const char *bad = bad_receipt(e, ids, sizeof ids, qty, sizeof qty);
  if (bad) return as_tx_reject(m, bad), 0;
  logi_rcpt_t t = {.id = e->receipt_id[0] ? e->receipt_id : m->env->event_id,
                   .warehouse = e->warehouse_id,
                   .tracking = e->tracking_number,
                   .condition = e->condition,
                   .ids = ids,
                   .qty = qty,
                   .at = e->received_at_us > 0 ? e->received_at_us : as_now_us()};
  char at[24];
  const char *v[8] = {t.id, e->warehouse_id, e->tracking_number, e->case_id, ids,
                      qty,  e->condition,    logi_i64(at, t.at)};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_record, 8, v, &r);
  if (rc) return rc;
  if (PQgetvalue(r, 0, 0)[0] != 't')
    rc = (as_counter_add(x->receipts_repeated, 1), 0);
  else
    rc = match(x, tx, m, &t, PQgetisnull(r, 0, 1) ? NULL : PQgetvalue(r, 0, 1), e);
  PQclear(r);
  return rc;
}

/* ---- ReceiptLinked: an agent releases a queued receipt */

static const char sql_queued[] =
    "SELECT case_id IS NULL, warehouse_id, tracking_number, condition, received_at_us,"
    " line_ids::text, quantities::text FROM receipts WHERE receipt_id = $1 FOR UPDATE";

int logi_on_linked(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__ReceiptLinked *e = m->env->receipt_linked;
  if (!as_envelope_id_ok(e->receipt_id) || !as_envelope_id_ok(e->case_id) ||
      !as_envelope_id_ok(e->agent_id))
    return as_tx_reject(m, "receipt linked: receipt, case or agent id missing or unsafe"), 0;
  const char *v[1] = {e->receipt_id};
  PGresult *q = NULL, *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_queued, 1, v, &q);
  const char *bad = rc                  ? NULL
                    : PQntuples(q) != 1 ? "unknown_receipt: no receipt with this id"
                    : PQgetvalue(q, 0, 0)[0] != 't'
                        ? "receipt_not_queued: matched or linked already"
                        : NULL;
  if (rc || bad) return PQclear(q), bad ? (as_tx_reject(m, bad), 0) : rc;
  logi_rcpt_t t = queued_rcpt(q, e->receipt_id);
  const char *why = check(tx, &t, e->case_id, &r, &rc);
  char detail[128];
  if (rc == 0 && why) {
    snprintf(detail, sizeof detail, "link_refused: %s", why);
    as_tx_reject(m, detail);
  } else if (rc == 0) {
    rc = release(x, tx, m, &t, e->case_id, "agent", e->agent_id, r);
    if (rc == 0) rc = refresh_queue(x, tx);
  }
  PQclear(r);
  PQclear(q);
  return rc;
}

/* ---- a queued receipt matched once its parcel is known
 *
 * The buyer's ReturnShipped (keyed by case) and the warehouse's receipt
 * (keyed by tracking number) travel on different partitions: a receipt
 * read first matched nothing and waits in the exception queue. The
 * shipment that names its tracking number releases it, as a match by
 * tracking number, without an agent. */

static const char sql_queued_by_tracking[] =
    "SELECT receipt_id, warehouse_id, tracking_number, condition, received_at_us,"
    " line_ids::text, quantities::text FROM receipts WHERE case_id IS NULL"
    " AND tracking_number = $1 ORDER BY received_at_us LIMIT 1 FOR UPDATE";

static int release_queued(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const char *case_id,
                          const char *tracking) {
  const char *v[1] = {tracking};
  PGresult *q = NULL, *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_queued_by_tracking, 1, v, &q);
  if (rc || PQntuples(q) == 0) return PQclear(q), rc;
  logi_rcpt_t t = queued_rcpt(q, PQgetvalue(q, 0, 0));
  const char *why = check(tx, &t, case_id, &r, &rc);
  if (rc == 0 && why) /* still not this case's: it stays for an agent */
    AS_INFO(x->log, "queued receipt not released by its shipment", AS_F_STR("receipt_id", t.id),
            AS_F_STR("case_id", case_id), AS_F_STR("why", why));
  else if (rc == 0) {
    rc = release(x, tx, cause, &t, case_id, "tracking_number", NULL, r);
    if (rc == 0) rc = refresh_queue(x, tx);
  }
  PQclear(r);
  PQclear(q);
  return rc;
}

/* ---- the return-transit clock: shipped, not received in time */

static const char sql_transit[] =
    "SELECT r.carrier, r.tracking_number, coalesce(c.order_id, ''), coalesce(c.buyer_id, ''),"
    " coalesce(c.locale, ''), coalesce(p.parcel_id, 0), coalesce(p.last_status, ''),"
    " coalesce(p.last_scan_us, 0) FROM returns r LEFT JOIN cases c USING (case_id)"
    " LEFT JOIN parcels p ON p.carrier = r.carrier AND p.tracking_number = r.tracking_number"
    " WHERE r.case_id = $1 AND r.received_at_us IS NULL AND r.tracking_number IS NOT NULL";

int logi_timers_transit(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                        int64_t due_us) {
  (void)kind, (void)due_us;
  logi_t *x = state;
  const char *v[1] = {case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_transit, 1, v, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc; /* received meanwhile */
  logi_ask_t a = {.kind = KIND(RETURN_TRANSIT),
                  .direction = DIR(RETURN),
                  .case_id = case_id,
                  .carrier = PQgetvalue(r, 0, 0),
                  .tracking_number = PQgetvalue(r, 0, 1),
                  .order_id = PQgetvalue(r, 0, 2),
                  .buyer_id = PQgetvalue(r, 0, 3),
                  .locale = PQgetvalue(r, 0, 4),
                  .parcel_id = strtoll(PQgetvalue(r, 0, 5), NULL, 10),
                  .last_status = PQgetvalue(r, 0, 6),
                  .last_scan_us = strtoll(PQgetvalue(r, 0, 7), NULL, 10),
                  .notice = NOTICE(RETURN_LATE)};
  char id[AS_UUID_STRLEN + 1];
  rc = logi_inquiry_open(x, tx, NULL, &a, id);
  PQclear(r);
  return rc;
}
