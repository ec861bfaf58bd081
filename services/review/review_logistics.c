/* review_logistics: review's side of the logistics worker (issue 13).
 *
 * The logistics worker asks the carrier and publishes one DeliveryOutcome
 * per inquiry that has a case; review carries the remedy out, exactly once,
 * from the state the outcome expects:
 *   forward parcel (a case routed to logistics, CARRIER_VERIFYING):
 *     DELIVERED_CONFIRMED -> CLOSED, the proof on the timeline and in a
 *       ReviewDecided (REJECTED, reason_code the rule) the buyer sees;
 *     REDELIVERY -> RESOLVED, closed by the "redelivery" deadline after
 *       redelivery_close_days unless a later DELIVERED_CONFIRMED (rule
 *       "redelivery.delivered") closes it first;
 *     LOST + REFUND -> REFUNDED: the claimed units' paid allocation through
 *       the ledger, the shipping fee as the policy's shipping keys say for
 *       the case's reason (review_policy_shape_lost: a reason whose
 *       shipping the seller bears is a seller-fault refund;
 *       refund_shipping_on_seller_fault, shipping_refund), capped by what
 *       is left of the fee paid;
 *     LOST + RESHIP -> EXCHANGED: one ExchangeRequested of the claimed
 *       lines, reason_code "reship.lost_parcel".
 *   return parcel (AWAITING_RETURN): LOST + REFUND -> REFUNDED, the claimed
 *     lines refunded as if received (the parcel the buyer shipped is the
 *     platform's problem), under the approval in force.
 * An outcome with no case (kind STALLED, naming an order: a parcel the
 * carrier lost before the buyer asked) has nothing of review's to remedy:
 * counted (no_case) and logged. An outcome for a case elsewhere (a second
 * outcome, a redelivery, a case
 * an agent or a timer moved first) is stale: counted, logged, ignored. An
 * outcome that contradicts its case or the contract (a finding or
 * direction review does not know, a remedy the finding does not allow, a
 * return outcome for a case with no return, another order) is
 * dead-lettered with the reason; an unknown case too.
 *
 * It also keeps what a ReturnReceived counted (logistics publishes only the
 * units that came back): the refund after inspection pays at most those.
 *
 * Ownership: everything allocated is freed before a function returns. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "review.h"

#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define O(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x
#define F(x) AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_##x
#define DIR(x) AFTERSALES__V1__PARCEL_DIRECTION__PARCEL_DIRECTION_##x

static const as_case_actor_t actor = {"system", "review"};

enum { MAX_RULE = 64, MAX_PROOF = 4000 };

/* Free text from a carrier: bounded, no control bytes. */
static bool proof_ok(const char *s) {
  size_t n = strlen(s);
  if (n > MAX_PROOF) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') return false;
  return true;
}

static bool id_or_empty(const char *s) {
  return s[0] == '\0' || as_envelope_id_ok(s);
}

/* A return outcome names a case review approved with a return; a forward
 * one a case intake routed to logistics. UNSPECIFIED is forward: the
 * message had no direction before issue 13. */
static const char *outcome_check(const Aftersales__V1__DeliveryOutcome *o,
                                 const review_rec_t *rec) {
  int f = (int)o->finding, r = (int)o->remedy, d = (int)o->direction;
  if (f != F(DELIVERED_CONFIRMED) && f != F(REDELIVERY) && f != F(LOST))
    return "delivery outcome: finding is not one review acts on";
  if (d != DIR(UNSPECIFIED) && d != DIR(FORWARD) && d != DIR(RETURN))
    return "delivery outcome: unknown direction";
  bool ret = d == DIR(RETURN);
  bool allowed = f == F(LOST) ? r == O(REFUND) || (!ret && r == O(RESHIP))
                              : r == O(NONE) || r == O(UNSPECIFIED);
  if (!allowed) return "delivery outcome: remedy not allowed for the finding";
  if (ret && f != F(LOST)) return "delivery outcome: a return parcel's outcome is LOST or nothing";
  if (!o->rule[0] || strlen(o->rule) > MAX_RULE || !as_envelope_id_ok(o->rule))
    return "delivery outcome: rule missing, too long or unsafe";
  if (!proof_ok(o->proof)) return "delivery outcome: proof too long or has control bytes";
  if (!id_or_empty(o->inquiry_id) || !id_or_empty(o->carrier) || !id_or_empty(o->tracking_number))
    return "delivery outcome: inquiry id, carrier or tracking number unsafe";
  if (o->order_id[0] && strcmp(o->order_id, rec->order_id) != 0)
    return "delivery outcome: not the case's order";
  if (ret && (rec->logistics || !rec->return_required))
    return "delivery outcome: direction RETURN on a case with no return";
  if (!ret && !rec->logistics)
    return "delivery outcome: forward outcome for a case not routed to logistics";
  return NULL;
}

/* The states each outcome expects the case in. */
static uint32_t expected(const Aftersales__V1__DeliveryOutcome *o) {
  if (o->direction == DIR(RETURN)) return REVIEW_STATE_BIT(AWAITING_RETURN);
  if (o->finding == F(DELIVERED_CONFIRMED))
    return REVIEW_STATE_BIT(CARRIER_VERIFYING) | REVIEW_STATE_BIT(RESOLVED);
  return REVIEW_STATE_BIT(CARRIER_VERIFYING);
}

static int stale(review_t *x, const review_rec_t *rec, const Aftersales__V1__DeliveryOutcome *o) {
  as_counter_add(x->logistics_stale, 1);
  AS_WARN(x->log, "delivery outcome for a case not where it expects: ignored",
          AS_F_STR("case_id", rec->case_id), AS_F_STR("state", as_case_state_name(rec->state)),
          AS_F_STR("rule", o->rule), AS_F_STR("inquiry_id", o->inquiry_id));
  return 0;
}

/* The timeline detail: the rule, the inquiry, the finding and the proof
 * the buyer is shown (escaped). */
static void outcome_detail(char *buf, size_t cap, const Aftersales__V1__DeliveryOutcome *o) {
  char proof[6 * MAX_PROOF + 3], inquiry[160];
  as_log_json_escape(proof, sizeof proof, o->proof);
  as_log_json_escape(inquiry, sizeof inquiry, o->inquiry_id);
  snprintf(buf, cap,
           "{\"rule\":\"%s\",\"inquiry_id\":%s,\"finding\":%d,\"remedy\":%d,\"direction\":%d,"
           "\"defaulted\":%s,\"proof\":%s}",
           o->rule, inquiry, (int)o->finding, (int)o->remedy, (int)o->direction,
           o->defaulted ? "true" : "false", proof);
}

/* Moves the case; *moved false when another move got there first. */
static int move(as_tx_t *tx, const as_msg_t *m, const review_rec_t *rec, as_case_state_t to,
                uint32_t from, const char *why, const char *detail, bool *moved) {
  int mrc;
  int rc = review_move(tx, rec->case_id, to, from, actor, why, m, detail, &mrc);
  *moved = rc == 0 && mrc == 0;
  return rc;
}

/* What the buyer is told: the rule, the case's new state, and for money
 * the approved amount. */
static int tell(review_t *x, as_tx_t *tx, const as_msg_t *m, review_rec_t *rec, int verdict,
                int outcome, int64_t amount, const char *rule, as_case_state_t to) {
  review_item_t it = {
      .cause = m, .rec = rec, .actor = actor, .to = to, .decided_at_us = as_now_us()};
  it.d.verdict = verdict;
  it.d.outcome = outcome;
  it.d.amount_minor = amount;
  it.d.rule = rule;
  return review_publish_decided(x, tx, &it);
}

/* The decision in force on review's row, so later events (a compensation,
 * an agent) see what was paid for and why. */
static int record(as_tx_t *tx, const review_rec_t *rec, int outcome, const char *rule,
                  int64_t amount, bool refund_shipping, int shipping_refund) {
  char out[16], amt[24], ship[16], verdict[16];
  snprintf(verdict, sizeof verdict, "%d", V(APPROVED));
  snprintf(out, sizeof out, "%d", outcome);
  snprintf(amt, sizeof amt, "%lld", (long long)amount);
  snprintf(ship, sizeof ship, "%d", shipping_refund);
  const char *v[7] = {rec->case_id, verdict, out, rule, amt, refund_shipping ? "t" : "f", ship};
  return as_db_query(
      as_tx_db(tx),
      "UPDATE cases SET verdict = $2, outcome = $3, rule = $4, decided_by = 'logistics',"
      " approved_minor = $5, refund_shipping = $6, shipping_refund = $7,"
      " updated_at = now() WHERE case_id = $1",
      7, v, NULL);
}

static int closed(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec,
                  const Aftersales__V1__DeliveryOutcome *o, const char *detail) {
  bool moved;
  bool redelivered = rec->state == ST(RESOLVED);
  int rc = move(tx, m, rec, ST(CLOSED), expected(o), o->rule, detail, &moved);
  if (rc < 0 || !moved) return rc < 0 ? rc : stale(x, rec, o);
  if (redelivered) rc = as_deadline_cancel(tx, rec->case_id, "redelivery");
  /* the proof is shown to the buyer, who may still complain */
  return rc ? rc
            : tell(x, tx, m, rec, redelivered ? V(UNSPECIFIED) : V(REJECTED), O(NONE), 0, o->rule,
                   ST(CLOSED));
}

static int resolved(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec,
                    const Aftersales__V1__DeliveryOutcome *o, const char *detail) {
  bool moved;
  int rc = move(tx, m, rec, ST(RESOLVED), expected(o), o->rule, detail, &moved);
  if (rc < 0 || !moved) return rc < 0 ? rc : stale(x, rec, o);
  rc = review_timers_arm(tx, rec->case_id, "redelivery",
                         review_policy_redelivery_close_us(x->policy, &rec->c));
  return rc ? rc : tell(x, tx, m, rec, V(UNSPECIFIED), O(NONE), 0, o->rule, ST(RESOLVED));
}

static int reshipped(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec,
                     const Aftersales__V1__DeliveryOutcome *o, const char *detail) {
  bool moved, done;
  int rc = move(tx, m, rec, ST(EXCHANGED), expected(o), o->rule, detail, &moved);
  if (rc < 0 || !moved) return rc < 0 ? rc : stale(x, rec, o);
  rc = record(tx, rec, O(RESHIP), o->rule, 0, false, 0);
  if (rc == 0) rc = review_money_exchange_for(x, tx, m, rec, "reship.lost_parcel", &done);
  return rc ? rc : tell(x, tx, m, rec, V(APPROVED), O(RESHIP), 0, o->rule, ST(EXCHANGED));
}

/* A lost parcel refunded: forward, the claimed units under the policy's
 * shipping keys for the reason; a lost return, under the approval in force
 * (an agent's approval below the claim stays the most it pays). */
static int refunded(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec,
                    const Aftersales__V1__DeliveryOutcome *o, const char *detail) {
  bool ret = o->direction == DIR(RETURN);
  int rc = 0;
  int64_t amount = rec->c.claimed_minor, paid = 0;
  bool ship = rec->refund_shipping;
  if (ret) {
    if (rec->approved_minor < amount) amount = rec->approved_minor;
    rc = as_deadline_cancel(tx, rec->case_id, "return");
    if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "return:transit");
  } else {
    review_decision_t d;
    review_policy_shape_lost(x->policy, &rec->c, &d);
    ship = d.refund_shipping;
    rec->shipping_refund = d.shipping_refund;
    rc = record(tx, rec, O(REFUND), o->rule, amount, ship, d.shipping_refund);
  }
  if (rc == 0)
    rc = amount < rec->c.claimed_minor
             ? review_money_refund(x, tx, m, rec, REVIEW_PAY_PARTIAL, amount, false, o->rule, &paid)
             : review_money_refund(x, tx, m, rec, REVIEW_PAY_ITEMS, amount, ship, o->rule, &paid);
  if (rc < 0) return rc;
  bool moved;
  as_case_state_t to = paid > 0 ? ST(REFUNDED) : ST(CLOSED);
  const char *why = paid > 0 ? o->rule : "refund.nothing_left";
  rc = move(tx, m, rec, to, expected(o), why, detail, &moved);
  if (rc < 0 || !moved) return rc < 0 ? rc : stale(x, rec, o);
  return paid > 0 ? tell(x, tx, m, rec, V(APPROVED), O(REFUND), paid, o->rule, to)
                  : tell(x, tx, m, rec, V(REJECTED), O(NONE), 0, why, to);
}

static int on_outcome(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__DeliveryOutcome *o = m->env->delivery_outcome;
  const char *bad = outcome_check(o, rec);
  if (bad) return as_tx_reject(m, bad), 0;
  if (!((1u << rec->state) & expected(o))) return stale(x, rec, o);
  char *detail = malloc(6 * MAX_PROOF + 512);
  if (!detail) return -ENOMEM;
  outcome_detail(detail, 6 * MAX_PROOF + 512, o);
  int rc;
  if (o->finding == F(DELIVERED_CONFIRMED))
    rc = closed(x, tx, m, rec, o, detail);
  else if (o->finding == F(REDELIVERY))
    rc = resolved(x, tx, m, rec, o, detail);
  else if (o->remedy == O(RESHIP))
    rc = reshipped(x, tx, m, rec, o, detail);
  else
    rc = refunded(x, tx, m, rec, o, detail);
  if (rc == 0) as_counter_add(x->logistics_applied, 1);
  free(detail);
  return rc;
}

int review_on_outcome(void *state, as_tx_t *tx, as_msg_t *m) {
  review_t *x = state;
  const Aftersales__V1__DeliveryOutcome *o = m->env->delivery_outcome;
  /* A stalled parcel the carrier lost before any buyer asked names only
   * its order: there is no case of review's to remedy (yet). */
  if (!o->case_id[0] && o->kind == AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_STALLED &&
      as_envelope_id_ok(o->order_id)) {
    as_counter_add(x->logistics_no_case, 1);
    AS_INFO(x->log, "delivery outcome with no case: nothing to remedy",
            AS_F_STR("order_id", o->order_id), AS_F_STR("rule", o->rule));
    return 0;
  }
  return review_with_case(state, tx, m, o->case_id, true, on_outcome);
}

/* ---- the redelivery's closing deadline */

int review_timers_redelivery(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                             int64_t due_us) {
  (void)kind, (void)due_us;
  review_t *x = state;
  const as_case_actor_t timer = {"system", "review:deadline"};
  review_rec_t rec;
  int rc = review_record_load(tx, case_id, &rec);
  if (rc == -ENOENT) return 0;
  int mrc = -EPERM; /* a case closed by the delivery first: nothing to do */
  if (rc == 0 && rec.state == ST(RESOLVED))
    rc = review_move(tx, case_id, ST(CLOSED), REVIEW_STATE_BIT(RESOLVED), timer,
                     "redelivery.closed", NULL, NULL, &mrc);
  if (rc == 0 && mrc == 0) {
    review_item_t it = {
        .rec = &rec, .actor = timer, .to = ST(CLOSED), .decided_at_us = as_now_us()};
    it.d.rule = "redelivery.closed";
    rc = review_publish_decided(x, tx, &it);
  }
  review_rec_free(&rec);
  return rc;
}

/* ---- what a ReturnReceived counted */

const char *review_logistics_received(as_tx_t *tx, const review_rec_t *rec,
                                      const Aftersales__V1__ReturnReceived *rr, int *rc) {
  *rc = 0;
  /* a receipt naming no lines and not partial (an upstream warehouse
   * without logistics) caps nothing: inspection's count decides */
  if (rr->n_lines == 0 && !rr->partial) return NULL;
  const char *bad = review_check_refs(rec, rr->lines, rr->n_lines, 0, true);
  if (bad) return bad;
  const char *v[3] = {rec->case_id, NULL, NULL};
  *rc = as_db_query(
      as_tx_db(tx),
      "UPDATE cases SET receipt_counted = true, updated_at = now() WHERE case_id = $1", 1, v, NULL);
  if (*rc == 0)
    *rc = as_db_query(as_tx_db(tx), "DELETE FROM received_lines WHERE case_id = $1", 1, v, NULL);
  for (size_t i = 0; *rc == 0 && i < rr->n_lines; i++) {
    if (rr->lines[i]->quantity < 1) continue;
    char q[16];
    snprintf(q, sizeof q, "%d", rr->lines[i]->quantity);
    v[1] = rr->lines[i]->line_id, v[2] = q;
    *rc = as_db_query(as_tx_db(tx),
                      "INSERT INTO received_lines (case_id, line_id, quantity) VALUES ($1, $2, $3)",
                      3, v, NULL);
  }
  return NULL;
}

int review_logistics_cap(as_tx_t *tx, const review_rec_t *rec, review_rec_t *counted) {
  if (!rec->receipt_counted) return 0;
  const char *v[1] = {rec->case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "SELECT line_id, quantity FROM received_lines WHERE case_id = $1", 1, v, &r);
  if (rc < 0) return rc;
  review_line_t *l = (review_line_t *)counted->c.lines;
  size_t k = 0;
  for (size_t i = 0; i < counted->c.nlines; i++) {
    int32_t got = 0;
    for (int j = 0; j < PQntuples(r); j++)
      if (strcmp(PQgetvalue(r, j, 0), l[i].line_id) == 0)
        got = (int32_t)strtol(PQgetvalue(r, j, 1), NULL, 10);
    if (got <= 0) continue;
    l[k] = l[i];
    if (l[k].quantity > got) l[k].quantity = got;
    k++;
  }
  PQclear(r);
  counted->c.nlines = k;
  return 0;
}
