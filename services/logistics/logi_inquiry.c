/* logi_inquiry: questions to carriers. An inquiry is recorded once (its id
 * from its kind, its case or tracking number and its ordinal), its answer
 * deadline armed, and CarrierVerificationRequested published. The
 * carrier's answer (by inquiry id, or by case id for carriers that do not
 * echo it) decides once: a buyer's case gets a DeliveryOutcome by the
 * outcome rules (README "Logistics rules"), a lost return parcel the
 * outcome return.lost.refund, a stalled parcel is only recorded unless
 * the carrier lost it: then a DeliveryOutcome with no case names the order
 * and its buyer (rule stalled.lost.<remedy>, key the order id), once per
 * inquiry, for the fleet to act on before the buyer asks. A second
 * answer is dead-lettered (already_answered). No answer by the deadline:
 * the outcome in the buyer's favour, defaulted, with SlaBreached (clock
 * carrier_answer). Review carries every remedy out and moves the case. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "logistics.h"

#define DIR(x) AFTERSALES__V1__PARCEL_DIRECTION__PARCEL_DIRECTION_##x
#define KIND(x) AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_##x
#define FIND(x) AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_##x
#define OUT(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x
#define CHECK(x) AFTERSALES__V1__VERIFICATION_CHECK__VERIFICATION_CHECK_##x

/* Two statements, not one with a CASE: each must use its index. */
static const char sql_ordinal_case[] =
    "SELECT count(*) + 1 FROM inquiries WHERE case_id = $2 AND kind = $1 AND case_id <> ''";
static const char sql_ordinal_parcel[] =
    "SELECT count(*) + 1 FROM inquiries WHERE tracking_number = $2 AND kind = $1 AND case_id = ''";

static const char sql_insert[] =
    "INSERT INTO inquiries (inquiry_id, kind, ordinal, case_id, parcel_id, order_id, carrier,"
    " tracking_number, direction, requested_at_us, answer_due_us)"
    " VALUES ($1, $2, $3, $4, NULLIF($5, '0')::bigint, $6, $7, $8, $9, $10, $11)";

static const char *question(int kind) {
  switch (kind) {
    case KIND(DELIVERED_NOT_RECEIVED):
      return "The buyer says this parcel, shown delivered, never reached them. Who signed for "
             "it (proxy signature), was it left in a locker or with a neighbour, and send the "
             "delivery photo and the courier's GPS position at the delivery scan.";
    case KIND(STALLED):
      return "This parcel has had no scan for longer than expected. Where is it now?";
    case KIND(NOT_RECEIVED):
      return "This parcel is past its expected delivery date and the buyer has not received it. "
             "Where is it now?";
    default:
      return "This return parcel has not reached the warehouse in time. Where is it now?";
  }
}

/* A case's answer clock is keyed by the case (so the case has a live
 * deadline while the carrier is asked); a stalled parcel's by its inquiry. */
static const char *answer_kind(const char *case_id) {
  return case_id[0] ? "answer" : "answer:parcel";
}

static const char *answer_key(const char *case_id, const char *inquiry_id) {
  return case_id[0] ? case_id : inquiry_id;
}

static int publish_request(as_tx_t *tx, const as_msg_t *cause, const logi_ask_t *a, const char *id,
                           int64_t now, int64_t due) {
  static const Aftersales__V1__VerificationCheck dbnr[] = {
      CHECK(PROXY_SIGNATURE), CHECK(LOCKER), CHECK(NEIGHBOUR), CHECK(PHOTO), CHECK(GPS)};
  static const Aftersales__V1__VerificationCheck where[] = {CHECK(LOCATION)};
  bool d = a->kind == KIND(DELIVERED_NOT_RECEIVED);
  Aftersales__V1__CarrierVerificationRequested q =
      AFTERSALES__V1__CARRIER_VERIFICATION_REQUESTED__INIT;
  q.case_id = (char *)a->case_id;
  q.carrier = (char *)a->carrier;
  q.tracking_number = (char *)a->tracking_number;
  q.question = (char *)question(a->kind);
  q.answer_due_us = due;
  q.inquiry_id = (char *)id;
  q.kind = a->kind;
  q.n_checks = d ? AS_LEN(dbnr) : 1;
  q.checks = (Aftersales__V1__VerificationCheck *)(d ? dbnr : where);
  q.order_id = (char *)a->order_id;
  q.shipment_id = (char *)(a->shipment_id ? a->shipment_id : "");
  q.direction = a->direction;
  q.requested_at_us = now;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CARRIER_VERIFICATION_REQUESTED;
  env.carrier_verification_requested = &q;
  const char *key = a->case_id[0] ? a->case_id : a->tracking_number;
  return logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, key, a->case_id, a->order_id, &env);
}

static void count_kind(logi_t *x, int kind) {
  as_counter_t *c[] = {NULL, x->inq_dbnr, x->inq_stalled, x->inq_not_received, x->inq_return};
  if (kind > 0 && kind < (int)AS_LEN(c)) as_counter_add(c[kind], 1);
}

int logi_inquiry_open(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const logi_ask_t *a,
                      char id[AS_UUID_STRLEN + 1]) {
  char k[24], pid[24], dir[24], now_s[24], due_s[24], n_s[24];
  bool c = a->case_id[0] != '\0';
  const char *v[2] = {logi_i64(k, a->kind), c ? a->case_id : a->tracking_number};
  int n = a->ordinal, rc = 0;
  if (n == 0) {
    PGresult *r = NULL;
    rc = as_db_query(as_tx_db(tx), c ? sql_ordinal_case : sql_ordinal_parcel, 2, v, &r);
    if (rc) return rc;
    n = atoi(PQgetvalue(r, 0, 0));
    PQclear(r);
  }
  logi_inquiry_id(id, a->kind, a->case_id[0] ? a->case_id : a->tracking_number, n);
  int64_t now = as_now_us(), due = now + x->conf->answer_hours * LOGI_HOUR_US;
  const char *w[11] = {id,
                       k,
                       logi_i64(n_s, n),
                       a->case_id,
                       logi_i64(pid, a->parcel_id),
                       a->order_id,
                       a->carrier,
                       a->tracking_number,
                       logi_i64(dir, a->direction),
                       logi_i64(now_s, now),
                       logi_i64(due_s, due)};
  rc = as_db_query(as_tx_db(tx), sql_insert, 11, w, NULL);
  if (rc == 0) rc = as_deadline_set(tx, answer_key(a->case_id, id), answer_kind(a->case_id), due);
  if (rc == 0) rc = publish_request(tx, cause, a, id, now, due);
  if (rc == 0 && a->notice) rc = logi_notice(tx, cause, a, id, a->notice);
  if (rc == 0) count_kind(x, a->kind);
  return rc;
}

/* ---- one inquiry as read back for its answer or its deadline */

typedef struct logi_inq {
  const char *id, *case_id, *order_id, *carrier, *tracking_number, *buyer_id;
  int kind, direction, preferred, ordinal;
  int64_t due_us, parcel_id;
  bool done;
} logi_inq_t;

#define INQ_COLS                                                                               \
  "SELECT i.inquiry_id, i.kind, i.case_id, i.order_id, i.carrier, i.tracking_number,"          \
  " i.direction, i.answer_due_us, i.answered_at_us IS NOT NULL OR i.closed_at_us IS NOT NULL," \
  " coalesce(c.preferred_outcome, 0), coalesce(i.parcel_id, 0), i.ordinal,"                    \
  " coalesce(o.buyer_id, '')"                                                                  \
  " FROM inquiries i LEFT JOIN cases c ON c.case_id = i.case_id AND i.case_id <> ''"           \
  " LEFT JOIN orders o ON o.order_id = i.order_id"
static const char sql_by_id[] = INQ_COLS " WHERE i.inquiry_id = $1::uuid FOR UPDATE OF i";
static const char sql_by_case[] = INQ_COLS
    " WHERE i.case_id = $1 AND i.case_id <> ''"
    " ORDER BY i.requested_at_us DESC, i.ordinal DESC"
    " LIMIT 1 FOR UPDATE OF i";

static void inq_at(PGresult *r, logi_inq_t *q) {
  q->id = PQgetvalue(r, 0, 0);
  q->kind = atoi(PQgetvalue(r, 0, 1));
  q->case_id = PQgetvalue(r, 0, 2);
  q->order_id = PQgetvalue(r, 0, 3);
  q->carrier = PQgetvalue(r, 0, 4);
  q->tracking_number = PQgetvalue(r, 0, 5);
  q->direction = atoi(PQgetvalue(r, 0, 6));
  q->due_us = strtoll(PQgetvalue(r, 0, 7), NULL, 10);
  q->done = PQgetvalue(r, 0, 8)[0] == 't';
  q->preferred = atoi(PQgetvalue(r, 0, 9));
  q->parcel_id = strtoll(PQgetvalue(r, 0, 10), NULL, 10);
  q->ordinal = atoi(PQgetvalue(r, 0, 11));
  q->buyer_id = PQgetvalue(r, 0, 12);
}

static const char sql_close[] =
    "UPDATE inquiries SET answered_at_us = NULLIF($2, '0')::bigint, finding = $3, rule = $4,"
    " defaulted = $5, closed_at_us = $6, closed_by = $7 WHERE inquiry_id = $1::uuid";

static int close_inq(as_tx_t *tx, const logi_inq_t *q, int64_t answered, int finding,
                     const char *rule, bool defaulted, const char *by) {
  char a[24], f[24], now[24];
  const char *v[7] = {q->id, logi_i64(a, answered), logi_i64(f, finding),
                      rule,  defaulted ? "t" : "f", logi_i64(now, as_now_us()),
                      by};
  return as_db_query(as_tx_db(tx), sql_close, 7, v, NULL);
}

/* The seed's measure: closed inquiries answered within their deadline, of
 * all closed (answered in time, late, or defaulted), in this instance. */
static void count_closed(logi_t *x, as_counter_t *c) {
  as_counter_add(c, 1);
  uint64_t ok = as_counter_value(x->answered_in_time);
  uint64_t all = ok + as_counter_value(x->answered_late) + as_counter_value(x->defaulted);
  as_gauge_set(x->answered_ratio, all ? (double)ok / (double)all : 0);
}

/* ---- the DeliveryOutcome */

typedef struct logi_decision {
  int finding, remedy;
  const char *rule, *proof;
  bool defaulted;
} logi_decision_t;

static int publish_outcome(logi_t *x, as_tx_t *tx, const as_msg_t *cause, const logi_inq_t *q,
                           const logi_decision_t *d) {
  Aftersales__V1__DeliveryOutcome o = AFTERSALES__V1__DELIVERY_OUTCOME__INIT;
  o.case_id = (char *)q->case_id;
  o.finding = d->finding;
  o.remedy = d->remedy;
  o.proof = (char *)(d->proof ? d->proof : "");
  o.decided_at_us = as_now_us();
  o.rule = (char *)d->rule;
  o.inquiry_id = (char *)q->id;
  o.kind = q->kind;
  o.direction = q->direction;
  o.order_id = (char *)q->order_id;
  o.carrier = (char *)q->carrier;
  o.tracking_number = (char *)q->tracking_number;
  o.defaulted = d->defaulted;
  o.buyer_id = (char *)q->buyer_id;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DELIVERY_OUTCOME;
  env.delivery_outcome = &o;
  /* no case (a stalled parcel lost): keyed by the order, no case to follow */
  bool c = q->case_id[0] != '\0';
  int rc = logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, c ? q->case_id : q->order_id,
                        q->case_id, q->order_id, &env);
  if (rc == 0 && c) rc = logi_followup_arm(x, tx, q->case_id, 1);
  if (rc == 0) as_counter_add(x->outcomes, 1);
  if (rc == 0)
    AS_INFO(x->log, "delivery outcome decided", AS_F_STR("case_id", q->case_id),
            AS_F_STR("rule", d->rule), AS_F_INT("defaulted", d->defaulted));
  return rc;
}

static const char *const finding_names[] = {"", "delivered_confirmed", "redelivery", "lost",
                                            "in_transit"};

/* The rule of finding on a buyer's case; remedy WAIT: no outcome yet. */
static logi_remedy_t decide_case(const logi_t *x, const logi_inq_t *q, int finding, char *rule,
                                 size_t len, int *remedy) {
  logi_remedy_t r = x->rule[finding];
  if (r == LOGI_REMEDY_PREFERRED)
    r = q->preferred == OUT(RESHIP) ? LOGI_REMEDY_RESHIP : LOGI_REMEDY_REFUND;
  *remedy = r == LOGI_REMEDY_REFUND   ? OUT(REFUND)
            : r == LOGI_REMEDY_RESHIP ? OUT(RESHIP)
                                      : OUT(NONE);
  snprintf(rule, len, "carrier.%s%s", finding_names[finding],
           r == LOGI_REMEDY_REFUND   ? ".refund"
           : r == LOGI_REMEDY_RESHIP ? ".reship"
                                     : "");
  return r;
}

/* Found and moving: ask again after the answer time (a case) or wait
 * the transit time again (a return). */
static int wait_again(logi_t *x, as_tx_t *tx, const logi_inq_t *q) {
  int64_t now = as_now_us();
  if (q->kind == KIND(RETURN_TRANSIT))
    return as_deadline_set(tx, q->case_id, "return_transit",
                           now + x->conf->transit_days * LOGI_DAY_US);
  return as_deadline_set(tx, q->case_id, "expected", now + x->conf->answer_hours * LOGI_HOUR_US);
}

static int answered(logi_t *x, as_tx_t *tx, as_msg_t *m, const logi_inq_t *q) {
  const Aftersales__V1__CarrierVerificationAnswered *e = m->env->carrier_verification_answered;
  int64_t at = e->answered_at_us > 0 ? e->answered_at_us : as_now_us();
  count_closed(x, at <= q->due_us ? x->answered_in_time : x->answered_late);
  char rule[64];
  logi_decision_t d = {.finding = e->finding, .proof = e->proof, .rule = rule};
  logi_remedy_t r = LOGI_REMEDY_NONE;
  if (q->kind == KIND(STALLED) && e->finding == FIND(LOST)) {
    /* no case, no buyer's preference yet: the rule's remedy for nobody's */
    r = decide_case(x, q, e->finding, rule, sizeof rule, &d.remedy);
    snprintf(rule, sizeof rule, "stalled.lost%s",
             d.remedy == OUT(RESHIP)   ? ".reship"
             : d.remedy == OUT(REFUND) ? ".refund"
                                       : "");
  } else if (q->kind == KIND(STALLED)) {
    snprintf(rule, sizeof rule, "stalled.%s", finding_names[e->finding]);
    r = LOGI_REMEDY_WAIT; /* no case: recorded only */
  } else if (q->kind == KIND(RETURN_TRANSIT)) {
    r = e->finding == FIND(LOST) ? LOGI_REMEDY_REFUND : LOGI_REMEDY_WAIT;
    snprintf(rule, sizeof rule, "%s",
             r == LOGI_REMEDY_REFUND ? "return.lost.refund" : "return.wait");
    d.remedy = OUT(REFUND);
  } else {
    r = decide_case(x, q, e->finding, rule, sizeof rule, &d.remedy);
  }
  int rc = close_inq(tx, q, at, e->finding, rule, false, "answer");
  if (rc == 0) rc = as_deadline_cancel(tx, answer_key(q->case_id, q->id), answer_kind(q->case_id));
  if (rc == 0 && q->kind == KIND(STALLED)) {
    char p[24];
    const char *v[1] = {logi_i64(p, q->parcel_id)};
    rc = as_db_query(as_tx_db(tx), "UPDATE parcels SET stalled_inquiry = NULL WHERE parcel_id = $1",
                     1, v, NULL);
    if (rc == 0 && r != LOGI_REMEDY_WAIT) rc = publish_outcome(x, tx, m, q, &d);
  } else if (rc == 0 && r == LOGI_REMEDY_WAIT) {
    rc = wait_again(x, tx, q);
  } else if (rc == 0) {
    rc = publish_outcome(x, tx, m, q, &d);
  }
  return rc;
}

static const char *bad_answer(const Aftersales__V1__CarrierVerificationAnswered *e) {
  if (e->inquiry_id[0] && !as_uuid_valid(e->inquiry_id))
    return "unknown_inquiry: inquiry id not a UUID";
  if (!e->inquiry_id[0] && !as_envelope_id_ok(e->case_id))
    return "unknown_inquiry: neither an inquiry id nor a safe case id";
  if (e->finding <= 0 || e->finding >= LOGI_FINDINGS) return "finding missing or unknown";
  if (!logi_text_ok(e->proof, LOGI_TEXT_MAX)) return "proof too long or has control bytes";
  if (e->answered_at_us < 0) return "answered_at_us negative";
  return NULL;
}

int logi_on_answer(void *state, as_tx_t *tx, as_msg_t *m) {
  logi_t *x = state;
  const Aftersales__V1__CarrierVerificationAnswered *e = m->env->carrier_verification_answered;
  const char *bad = bad_answer(e);
  if (bad) return as_counter_add(x->answers_refused, 1), as_tx_reject(m, bad), 0;
  bool by_id = e->inquiry_id[0] != '\0';
  const char *v[1] = {by_id ? e->inquiry_id : e->case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), by_id ? sql_by_id : sql_by_case, 1, v, &r);
  if (rc) return rc;
  logi_inq_t q = {0};
  if (PQntuples(r) == 1) inq_at(r, &q);
  if (PQntuples(r) != 1)
    bad = by_id ? "unknown_inquiry: no inquiry with this id"
                : "unknown_case: no inquiry for this case";
  else if (q.done)
    bad = "already_answered: the inquiry was answered or closed already";
  if (bad) {
    as_counter_add(x->answers_refused, 1);
    as_tx_reject(m, bad);
  } else {
    rc = answered(x, tx, m, &q);
  }
  PQclear(r);
  return rc;
}

/* ---- no answer by the deadline */

int logi_timers_answer(void *state, as_tx_t *tx, const char *key, const char *kind,
                       int64_t due_us) {
  (void)due_us;
  logi_t *x = state;
  bool by_case = strcmp(kind, "answer") == 0;
  const char *v[1] = {key};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), by_case ? sql_by_case : sql_by_id, 1, v, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc;
  logi_inq_t q;
  inq_at(r, &q);
  if (q.done) return PQclear(r), 0;
  char rule[64];
  logi_decision_t d = {
      .finding = FIND(LOST), .remedy = OUT(REFUND), .rule = rule, .defaulted = true};
  if (q.kind == KIND(RETURN_TRANSIT)) {
    snprintf(rule, sizeof rule, "return.lost.refund");
  } else {
    if (q.preferred == OUT(RESHIP)) d.remedy = OUT(RESHIP);
    snprintf(rule, sizeof rule, "%s",
             q.kind == KIND(STALLED)   ? "deadline.stalled"
             : d.remedy == OUT(RESHIP) ? "deadline.buyer_favour.reship"
                                       : "deadline.buyer_favour.refund");
  }
  rc = close_inq(tx, &q, 0, 0, rule, true, "deadline");
  count_closed(x, x->defaulted);
  if (rc == 0 && q.case_id[0]) rc = publish_outcome(x, tx, NULL, &q, &d);
  if (rc == 0 && q.case_id[0])
    rc = logi_breach(tx, NULL, q.case_id, q.order_id, "carrier_answer", q.due_us,
                     "logistics_desk"); /* the promise, not when the row fired */
  if (rc == 0)
    AS_WARN(x->log, "carrier did not answer by the deadline", AS_F_STR("inquiry_id", q.id),
            AS_F_STR("rule", rule));
  PQclear(r);
  return rc;
}
