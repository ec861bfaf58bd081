/* logi_cases: CaseOpened. Every case is projected (its order, buyer,
 * preferred outcome and claimed lines: a return of any case is matched
 * against them). A case routed to logistics starts its flow at once:
 * delivered-not-received asks the carrier to verify the delivery (the case
 * moves OPEN -> CARRIER_VERIFYING); not received (or tracking stalled)
 * asks where the parcel is once the expected delivery date has passed (at
 * once, or from the "expected" deadline: see wait_expected for why the
 * case leaves OPEN while it waits); any other reason, or an order
 * whose parcel logistics never saw, has no flow here and is escalated to
 * the logistics desk (OPEN -> ESCALATED, SlaBreached clock "logistics"),
 * so no case is left without an owner. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_case.h"
#include "as_cols.h"
#include "as_deadline.h"
#include "as_log.h"
#include "logistics.h"

#define DIR(x) AFTERSALES__V1__PARCEL_DIRECTION__PARCEL_DIRECTION_##x
#define KIND(x) AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_##x
#define NOTICE(x) AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_##x
#define RS(x) AFTERSALES__V1__REASON__REASON_##x
#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x

static const as_case_actor_t actor = {"system", "logistics"};

static const char sql_case[] =
    "INSERT INTO cases (case_id, order_id, buyer_id, route, reason, preferred_outcome, locale,"
    " line_ids, quantities) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text[], $9::int[])"
    " ON CONFLICT (case_id) DO NOTHING RETURNING case_id";

/* The claimed lines as two array literals (ids are [A-Za-z0-9._:-]). */
static const char *claimed(const Aftersales__V1__CaseOpened *e, char *ids, size_t il, char *qty,
                           size_t ql) {
  size_t a = 0, b = 0, n = e->n_case_lines ? e->n_case_lines : e->n_lines;
  if (n > LOGI_MAX_LINES) return "more than 100 case lines";
  ids[a++] = '{', qty[b++] = '{';
  for (size_t i = 0; i < n; i++) {
    const char *id = e->n_case_lines ? e->case_lines[i]->line_id : e->lines[i]->line_id;
    int q = e->n_case_lines ? e->case_lines[i]->quantity : e->lines[i]->quantity;
    if (!as_envelope_id_ok(id) || q < 1) return "case line: line id unsafe or no units claimed";
    a += (size_t)snprintf(ids + a, il - a, "%s%s", i ? "," : "", id);
    b += (size_t)snprintf(qty + b, ql - b, "%s%d", i ? "," : "", q);
  }
  ids[a++] = '}', qty[b++] = '}';
  ids[a] = qty[b] = '\0';
  return NULL;
}

/* The order's forward parcel as an inquiry needs it; false: none known. */
typedef struct logi_parcel {
  PGresult *r;
  int64_t expected_us;
} logi_parcel_t;

static const char sql_parcel[] =
    "SELECT parcel_id, carrier, tracking_number, coalesce(shipment_id, ''),"
    " coalesce(last_status, ''), coalesce(last_scan_us, 0), coalesce(expected_delivery_us, 0)"
    " FROM parcels WHERE order_id = $1 AND direction = 1"
    " ORDER BY shipped_at_us DESC NULLS LAST LIMIT 1";

static int parcel_of(as_tx_t *tx, const char *order_id, logi_parcel_t *p, logi_ask_t *a) {
  const char *v[1] = {order_id};
  int rc = as_db_query(as_tx_db(tx), sql_parcel, 1, v, &p->r);
  if (rc || PQntuples(p->r) != 1) return rc;
  a->parcel_id = strtoll(PQgetvalue(p->r, 0, 0), NULL, 10);
  a->carrier = PQgetvalue(p->r, 0, 1);
  a->tracking_number = PQgetvalue(p->r, 0, 2);
  a->shipment_id = PQgetvalue(p->r, 0, 3);
  a->last_status = PQgetvalue(p->r, 0, 4);
  a->last_scan_us = strtoll(PQgetvalue(p->r, 0, 5), NULL, 10);
  p->expected_us = strtoll(PQgetvalue(p->r, 0, 6), NULL, 10);
  return 0;
}

static int move(as_tx_t *tx, const as_msg_t *cause, const char *case_id, as_case_state_t to,
                const char *why, as_case_state_t *from) {
  as_case_move_t m = {.case_id = case_id,
                      .to = to,
                      .from_mask = AS_CASE_BIT(ST(OPEN)),
                      .actor = actor,
                      .why = why,
                      .event_id = cause && cause->env ? cause->env->event_id : NULL,
                      .cause = cause};
  int rc = as_case_transition_many(tx, &m, 1);
  *from = m.from;
  return rc ? rc : m.rc;
}

static int escalate(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const logi_ask_t *a,
                    const char *why) {
  as_case_state_t from;
  int rc = move(tx, cause, a->case_id, ST(ESCALATED), why, &from);
  if (rc == -EPERM || rc == -ENOENT) return as_counter_add(x->cases_not_open, 1), 0;
  if (rc == 0)
    rc =
        logi_breach(tx, cause, a->case_id, a->order_id, "logistics", as_now_us(), "logistics_desk");
  if (rc == 0) rc = logi_followup_arm(x, tx, a->case_id, 1);
  if (rc == 0) as_counter_add(x->escalated, 1);
  if (rc == 0)
    AS_WARN(x->log, "logistics case escalated", AS_F_STR("case_id", a->case_id),
            AS_F_STR("why", why));
  return rc;
}

/* Moves the case to carrier verification (already there: a re-ask) and
 * opens the inquiry. */
static int ask(logi_t *x, as_tx_t *tx, const as_msg_t *cause, logi_ask_t *a) {
  as_case_state_t from;
  int rc =
      move(tx, cause, a->case_id, ST(CARRIER_VERIFYING), "carrier.verification_requested", &from);
  if (rc == -EPERM && from == ST(CARRIER_VERIFYING)) rc = 0;
  if (rc == -EPERM || rc == -ENOENT) {
    as_counter_add(x->cases_not_open, 1);
    AS_WARN(x->log, "logistics case not open: carrier not asked", AS_F_STR("case_id", a->case_id),
            AS_F_STR("state", as_case_state_name(from)));
    return 0;
  }
  char id[AS_UUID_STRLEN + 1];
  return rc ? rc : logi_inquiry_open(x, tx, cause, a, id);
}

/* A not-received case opened before the parcel's expected delivery date:
 * logistics takes it now (OPEN -> CARRIER_VERIFYING, "expected" armed at
 * that date) and tells the buyer when the carrier will be asked. Why move
 * before asking: intake's "pickup" clock escalates a logistics case still
 * OPEN after AS_INTAKE_REVIEW_HOURS, usually long before the expected date,
 * and then the "expected" deadline finds the case ESCALATED and leaves it.
 * Leaving OPEN is what meets pickup (intake_clock.c) for every route, so
 * one owner holds the case's clock from here on: logistics' "expected"
 * deadline, then its answer deadline (ask() finds the case already in
 * CARRIER_VERIFYING and only opens the inquiry). A case intake escalated
 * first is not OPEN: counted in cases_not_open, left to the desk. */
static int wait_expected(logi_t *x, as_tx_t *tx, const as_msg_t *cause, logi_ask_t *a,
                         int64_t expected_us) {
  as_case_state_t from;
  int rc = move(tx, cause, a->case_id, ST(CARRIER_VERIFYING), "carrier.awaiting_expected_delivery",
                &from);
  if (rc == -EPERM || rc == -ENOENT) {
    as_counter_add(x->cases_not_open, 1);
    AS_WARN(x->log, "logistics case not open: not taken", AS_F_STR("case_id", a->case_id),
            AS_F_STR("state", as_case_state_name(from)));
    return 0;
  }
  a->ask_carrier_at_us = expected_us;
  if (rc == 0) rc = as_deadline_set(tx, a->case_id, "expected", expected_us);
  /* kind UNSPECIFIED (notification words it "an update"): the notice's
   * news is ask_carrier_at_us; a kind of its own would be refused by the
   * notification worker, which knows kinds 0..5 */
  if (rc == 0) rc = logi_notice(tx, cause, a, NULL, NOTICE(UNSPECIFIED));
  return rc;
}

/* The flow of a logistics case's reason. */
static int start(logi_t *x, as_tx_t *tx, const as_msg_t *cause, logi_ask_t *a, int reason) {
  logi_parcel_t p = {0};
  bool dbnr = reason == RS(DELIVERED_NOT_RECEIVED);
  bool late = reason == RS(NOT_RECEIVED) || reason == RS(TRACKING_STALLED);
  if (!dbnr && !late) return escalate(x, tx, cause, a, "logistics.unhandled_reason");
  int rc = parcel_of(tx, a->order_id, &p, a);
  if (rc == 0 && PQntuples(p.r) != 1)
    rc = escalate(x, tx, cause, a, "logistics.no_parcel");
  else if (rc == 0 && dbnr) {
    a->kind = KIND(DELIVERED_NOT_RECEIVED), a->notice = NOTICE(CARRIER_VERIFYING);
    rc = ask(x, tx, cause, a);
  } else if (rc == 0 && as_now_us() >= p.expected_us) {
    a->kind = KIND(NOT_RECEIVED), a->notice = NOTICE(LATE);
    rc = ask(x, tx, cause, a);
  } else if (rc == 0) {
    rc = wait_expected(x, tx, cause, a, p.expected_us);
  }
  PQclear(p.r);
  return rc;
}

static const char *bad_case(const Aftersales__V1__CaseOpened *e) {
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->order_id) ||
      !as_envelope_id_ok(e->buyer_id))
    return "case, order or buyer id missing or unsafe";
  if (!logi_text_ok(e->route, 64) || !logi_text_ok(e->locale, 35))
    return "route or locale too long or has control bytes";
  return NULL;
}

static int opened(logi_t *x, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__CaseOpened *e = m->env->case_opened;
  char ids[LOGI_MAX_LINES * 66 + 4], qty[LOGI_MAX_LINES * 12 + 4];
  const char *bad = bad_case(e);
  if (!bad) bad = claimed(e, ids, sizeof ids, qty, sizeof qty);
  if (bad) return as_tx_reject(m, bad), 0;
  char reason[24], pref[24];
  const char *v[9] = {e->case_id,
                      e->order_id,
                      e->buyer_id,
                      e->route,
                      logi_i64(reason, e->reason),
                      logi_i64(pref, e->preferred_outcome),
                      e->locale,
                      ids,
                      qty};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_case, 9, v, &r);
  bool fresh = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (!fresh || strcmp(e->route, "logistics") != 0) return rc;
  logi_ask_t a = {.direction = DIR(FORWARD),
                  .case_id = e->case_id,
                  .order_id = e->order_id,
                  .buyer_id = e->buyer_id,
                  .locale = e->locale};
  return start(x, tx, m, &a, e->reason);
}

int logi_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) rc = opened(state, tx, msgs[i]);
  return rc;
}

static const char sql_load[] = "SELECT order_id, buyer_id, locale FROM cases WHERE case_id = $1";

int logi_timers_expected(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                         int64_t due_us) {
  (void)kind, (void)due_us;
  logi_t *x = state;
  const char *v[1] = {case_id};
  PGresult *r = NULL, *pr = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_load, 1, v, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc;
  logi_ask_t a = {.kind = KIND(NOT_RECEIVED),
                  .direction = DIR(FORWARD),
                  .case_id = case_id,
                  .order_id = PQgetvalue(r, 0, 0),
                  .buyer_id = PQgetvalue(r, 0, 1),
                  .locale = PQgetvalue(r, 0, 2),
                  .notice = NOTICE(LATE)};
  logi_parcel_t p = {0};
  rc = parcel_of(tx, a.order_id, &p, &a);
  pr = p.r;
  if (rc == 0 && PQntuples(pr) == 1) rc = ask(x, tx, NULL, &a);
  PQclear(pr);
  PQclear(r);
  return rc;
}
