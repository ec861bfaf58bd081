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

/* The case's claimed lines beside the receipt's counted units. */
static const char sql_lines[] =
    "SELECT e.line_id, e.qty, LEAST(coalesce(g.qty, 0), e.qty)"
    " FROM cases c CROSS JOIN LATERAL unnest(c.line_ids, c.quantities) WITH ORDINALITY"
    " AS e(line_id, qty, ord) LEFT JOIN (SELECT line_id, sum(qty) AS qty FROM receipts rc"
    " CROSS JOIN LATERAL unnest(rc.line_ids, rc.quantities) AS g(line_id, qty)"
    " WHERE rc.receipt_id = $2 GROUP BY line_id) g USING (line_id)"
    " WHERE c.case_id = $1 ORDER BY e.ord";

static const char sql_return[] =
    "SELECT r.warehouse_id, r.ship_by_us, r.received_at_us IS NULL, coalesce(c.order_id, ''),"
    " c.case_id IS NOT NULL FROM returns r LEFT JOIN cases c USING (case_id)"
    " WHERE r.case_id = $1 FOR UPDATE OF r";

static const char sql_receipt[] =
    "SELECT warehouse_id, tracking_number, condition, received_at_us FROM receipts"
    " WHERE receipt_id = $1";

static const char sql_matched[] =
    "WITH r AS (UPDATE returns SET received_at_us = $3, receipt_id = $2 WHERE case_id = $1)"
    " UPDATE receipts SET case_id = $1, matched_by = $4, released_by = NULLIF($5, '')"
    " WHERE receipt_id = $2";

typedef struct logi_match {
  PGresult *ret, *lines, *rcpt;
} logi_match_t;

static void match_free(logi_match_t *mm) {
  PQclear(mm->ret), PQclear(mm->lines), PQclear(mm->rcpt);
}

/* Why receipt cannot go to case_id, or NULL (mm then holds what to publish). */
static const char *check(as_tx_t *tx, const char *receipt_id, const char *case_id, logi_match_t *mm,
                         int *rc) {
  const char *v[2] = {case_id, receipt_id};
  *rc = as_db_query(as_tx_db(tx), sql_return, 1, v, &mm->ret);
  if (*rc == 0) *rc = as_db_query(as_tx_db(tx), sql_lines, 2, v, &mm->lines);
  if (*rc == 0) *rc = as_db_query(as_tx_db(tx), sql_receipt, 1, v + 1, &mm->rcpt);
  if (*rc) return NULL;
  if (PQntuples(mm->ret) != 1 || PQgetvalue(mm->ret, 0, 4)[0] != 't') return "no_match";
  if (PQgetvalue(mm->ret, 0, 2)[0] != 't') return "case_not_awaiting_return";
  for (int i = 0; i < PQntuples(mm->lines); i++)
    if (atoi(PQgetvalue(mm->lines, i, 2)) > 0) return NULL;
  return "no_expected_lines";
}

static int publish_received(as_tx_t *tx, const as_msg_t *cause, const char *receipt_id,
                            const char *case_id, const char *by, const logi_match_t *mm) {
  int n = PQntuples(mm->lines);
  Aftersales__V1__LineRef *got = calloc((size_t)n + 1, sizeof *got),
                          *exp = calloc((size_t)n + 1, sizeof *exp);
  Aftersales__V1__LineRef **gp = calloc((size_t)n + 1, sizeof *gp),
                          **ep = calloc((size_t)n + 1, sizeof *ep);
  if (!got || !exp || !gp || !ep) return free(got), free(exp), free(gp), free(ep), -ENOMEM;
  Aftersales__V1__ReturnReceived rr = AFTERSALES__V1__RETURN_RECEIVED__INIT;
  for (int i = 0; i < n; i++) {
    aftersales__v1__line_ref__init(&exp[i]);
    exp[i].line_id = PQgetvalue(mm->lines, i, 0);
    exp[i].quantity = atoi(PQgetvalue(mm->lines, i, 1));
    ep[rr.n_expected_lines++] = &exp[i];
    int q = atoi(PQgetvalue(mm->lines, i, 2));
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
  rr.warehouse_id = PQgetvalue(mm->rcpt, 0, 0);
  rr.tracking_number = PQgetvalue(mm->rcpt, 0, 1);
  rr.condition = PQgetvalue(mm->rcpt, 0, 2);
  rr.received_at_us = strtoll(PQgetvalue(mm->rcpt, 0, 3), NULL, 10);
  rr.late = rr.received_at_us > strtoll(PQgetvalue(mm->ret, 0, 1), NULL, 10);
  rr.receipt_id = (char *)receipt_id;
  rr.matched_by = (char *)by;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_RETURN_RECEIVED;
  env.return_received = &rr;
  int rc = logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, case_id, case_id,
                        PQgetvalue(mm->ret, 0, 3), &env);
  free(got), free(exp), free(gp), free(ep);
  return rc;
}

/* Receipt to case as matched by (tracking_number, label, agent). */
static int release(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const char *receipt_id,
                   const char *case_id, const char *by, const char *agent, logi_match_t *mm) {
  char at[24];
  const char *v[5] = {case_id, receipt_id,
                      logi_i64(at, strtoll(PQgetvalue(mm->rcpt, 0, 3), NULL, 10)), by,
                      agent ? agent : ""};
  int rc = as_db_query(as_tx_db(tx), sql_matched, 5, v, NULL);
  if (rc == 0) rc = as_deadline_cancel(tx, case_id, "return_transit");
  if (rc == 0) rc = publish_received(tx, cause, receipt_id, case_id, by, mm);
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

static const char sql_record[] =
    "INSERT INTO receipts (receipt_id, warehouse_id, tracking_number, label_case_id, line_ids,"
    " quantities, condition, received_at_us) VALUES ($1, $2, $3, $4, $5::text[], $6::int[], $7,"
    " $8) ON CONFLICT (receipt_id) DO NOTHING RETURNING receipt_id";
static const char sql_by_tracking[] =
    "SELECT case_id FROM returns WHERE tracking_number = $1 ORDER BY received_at_us IS NULL DESC"
    " LIMIT 1";

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

/* The case the receipt is for: by tracking number, else by its label. */
static int find_case(as_tx_t *tx, const Aftersales__V1__WarehouseReceipt *e, PGresult **r,
                     const char **case_id, const char **by) {
  *case_id = NULL;
  if (e->tracking_number[0]) {
    const char *v[1] = {e->tracking_number};
    int rc = as_db_query(as_tx_db(tx), sql_by_tracking, 1, v, r);
    if (rc) return rc;
    if (PQntuples(*r) == 1) return *case_id = PQgetvalue(*r, 0, 0), *by = "tracking_number", 0;
  }
  if (e->case_id[0]) *case_id = e->case_id, *by = "label";
  return 0;
}

int logi_on_receipt(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__WarehouseReceipt *e = m->env->warehouse_receipt;
  char ids[LOGI_MAX_LINES * 66 + 4], qty[LOGI_MAX_LINES * 12 + 4];
  const char *bad = bad_receipt(e, ids, sizeof ids, qty, sizeof qty);
  if (bad) return as_tx_reject(m, bad), 0;
  const char *rid = e->receipt_id[0] ? e->receipt_id : m->env->event_id;
  char at[24];
  int64_t when = e->received_at_us > 0 ? e->received_at_us : as_now_us();
  const char *v[8] = {rid, e->warehouse_id, e->tracking_number, e->case_id, ids,
                      qty, e->condition,    logi_i64(at, when)};
  PGresult *r = NULL, *f = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_record, 8, v, &r);
  bool fresh = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc || !fresh) return rc ? rc : (as_counter_add(x->receipts_repeated, 1), 0);
  const char *case_id = NULL, *by = NULL;
  rc = find_case(tx, e, &f, &case_id, &by);
  logi_match_t mm = {0};
  const char *why = rc || !case_id ? "no_match" : check(tx, rid, case_id, &mm, &rc);
  if (rc == 0 && why)
    rc = unmatched(x, tx, m, rid, e, why);
  else if (rc == 0)
    rc = release(x, tx, m, rid, case_id, by, NULL, &mm);
  match_free(&mm);
  PQclear(f);
  return rc;
}

/* ---- ReceiptLinked: an agent releases a queued receipt */

static const char sql_queued[] =
    "SELECT case_id IS NULL FROM receipts WHERE receipt_id = $1 FOR UPDATE";

int logi_on_linked(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__ReceiptLinked *e = m->env->receipt_linked;
  if (!as_envelope_id_ok(e->receipt_id) || !as_envelope_id_ok(e->case_id) ||
      !as_envelope_id_ok(e->agent_id))
    return as_tx_reject(m, "receipt linked: receipt, case or agent id missing or unsafe"), 0;
  const char *v[1] = {e->receipt_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_queued, 1, v, &r);
  const char *bad = rc                  ? NULL
                    : PQntuples(r) != 1 ? "unknown_receipt: no receipt with this id"
                    : PQgetvalue(r, 0, 0)[0] != 't'
                        ? "receipt_not_queued: matched or linked already"
                        : NULL;
  PQclear(r);
  if (rc || bad) return bad ? (as_tx_reject(m, bad), 0) : rc;
  logi_match_t mm = {0};
  const char *why = check(tx, e->receipt_id, e->case_id, &mm, &rc);
  char detail[128];
  if (rc == 0 && why) {
    snprintf(detail, sizeof detail, "link_refused: %s", why);
    as_tx_reject(m, detail);
  } else if (rc == 0) {
    rc = release(x, tx, m, e->receipt_id, e->case_id, "agent", e->agent_id, &mm);
    if (rc == 0) rc = refresh_queue(x, tx);
  }
  match_free(&mm);
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
