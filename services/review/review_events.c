/* review_events: everything after the first decision, one handler per
 * payload type.
 *
 * Evidence re-decides a case that waited for it; a buyer's reply settles a
 * goodwill offer; an agent decides a case in manual review; a seller's
 * dispute goes to a mediator whose ruling is final; a return shipped stops
 * the return clock, a return received plus a passed inspection (in either
 * order; review_inspection has the finding) pays the refund or asks for
 * the exchange. Events about cases
 * review does not hold, or that arrive after the case moved on, change
 * nothing; events that contradict the case (a reply to another offer, an
 * agent deciding a case nobody asked about, an amount above the claim) are
 * dead-lettered with the reason. Every move the buyer can see is told with
 * a ReviewDecided naming the rule and the case's new state, and every wait
 * on someone outside review (the mediator) arms its
 * follow-up deadline (the inspection's is the inspection worker's, a
 * return parcel's transit the logistics worker's). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "review.h"

#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define O(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x

static const as_case_actor_t system_actor = {"system", "review"};

/* Free text from agents and sellers: bounded, no control bytes; invalid
 * UTF-8 is escaped when the timeline stores it. */
static bool text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') return false;
  return true;
}

/* Sets one column of the case's review row (SET_COL names it: the
 * statement is a literal), value a text parameter. */
#define SET_COL(column) "UPDATE cases SET " column " = $2 WHERE case_id = $1"
static int set_col(as_tx_t *tx, const review_rec_t *rec, const char *sql, const char *value) {
  const char *vals[2] = {rec->case_id, value};
  return as_db_query(as_tx_db(tx), sql, 2, vals, NULL);
}

static int set_col_us(as_tx_t *tx, const review_rec_t *rec, const char *sql, int64_t us) {
  char at[24];
  snprintf(at, sizeof at, "%lld", (long long)us);
  return set_col(tx, rec, sql, at);
}

static int settle_move(as_tx_t *tx, const as_msg_t *m, const review_rec_t *rec, as_case_state_t to,
                       uint32_t from, as_case_actor_t who, const char *why, const char *detail) {
  int mrc;
  return review_move(tx, rec->case_id, to, from, who, why, m, detail, &mrc);
}

/* ---- evidence: a case waiting for a photo or video gets decided again */
static int on_evidence(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__EvidenceAdded *e = m->env->evidence_added;
  if (rec->state != ST(AWAITING_EVIDENCE)) return 0;
  if (!as_envelope_has_photo_or_video(e->evidence, e->n_evidence)) return 0;
  int rc = set_col(tx, rec, SET_COL("has_media"), "t");
  if (rc == 0) rc = as_deadline_cancel(tx, rec->case_id, "evidence");
  rec->c.has_photo_or_video = true;
  review_item_t it = {.cause = m,
                      .rec = rec,
                      .from_mask = REVIEW_STATE_BIT(AWAITING_EVIDENCE),
                      .actor = system_actor,
                      .decided_at_us = as_now_us()};
  review_decide(x->policy, &rec->c, &it.d);
  return rc == 0 ? review_apply(x, tx, &it, 1) : rc;
}

/* ---- the buyer's answer to a goodwill offer */
static int on_reply(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__BuyerReplied *r = m->env->buyer_replied;
  if (strcmp(r->buyer_id, rec->buyer_id) != 0)
    return as_tx_reject(m, "reply: not the case's buyer"), 0;
  if (rec->state != ST(GOODWILL_OFFERED))
    return as_tx_reject(m, "reply: no open offer on the case"), 0;
  if (strcmp(r->offer_id, rec->offer_id) != 0)
    return as_tx_reject(m, "reply: offer id does not match"), 0;
  as_case_actor_t buyer = {"buyer", rec->buyer_id};
  int rc = as_deadline_cancel(tx, rec->case_id, "offer");
  if (rc < 0) return rc;
  if (!r->accepted)
    return settle_move(tx, m, rec, ST(CLOSED), REVIEW_STATE_BIT(GOODWILL_OFFERED), buyer,
                       "goodwill.declined", NULL);
  if (rec->offer_kind == O(EXCHANGE)) return review_proactive_exchange(x, tx, m, rec);
  if (rec->offer_kind == O(COUPON)) {
    bool done;
    rc = review_money_coupon(x, tx, m, rec, rec->offer_minor, &done);
    return rc ? rc
              : settle_move(tx, m, rec, ST(CLOSED), REVIEW_STATE_BIT(GOODWILL_OFFERED), buyer,
                            "goodwill.coupon_accepted", NULL);
  }
  int64_t paid;
  rc = review_money_refund(x, tx, m, rec, REVIEW_PAY_GOODWILL, rec->offer_minor, false,
                           "goodwill.accepted", &paid);
  if (rc < 0) return rc;
  return settle_move(tx, m, rec, paid > 0 ? ST(REFUNDED) : ST(CLOSED),
                     REVIEW_STATE_BIT(GOODWILL_OFFERED), buyer,
                     paid > 0 ? "goodwill.accepted" : "refund.nothing_left", NULL);
}

/* ---- a human decision on a case in manual review */
static const char *agent_check(const Aftersales__V1__AgentDecision *a, const review_rec_t *rec) {
  if (!as_envelope_id_ok(a->agent_id)) return "agent decision: agent id missing or unsafe";
  if (!(rec->state == ST(MANUAL_REVIEW) || rec->state == ST(ESCALATED)))
    return "agent decision: case_not_in_manual_review";
  if (!text_ok(a->note, 4000)) return "agent decision: note too long or has control bytes";
  int v = a->verdict;
  if (v != V(APPROVED) && v != V(REJECTED) && v != V(GOODWILL_OFFER) && v != V(AWAITING_EVIDENCE))
    return "agent decision: verdict not applicable";
  const Aftersales__V1__Money *amt = a->amount;
  bool priced = amt && amt->amount_minor != 0;
  if (priced && (strcmp(amt->currency, rec->c.currency) != 0 || amt->amount_minor < 0 ||
                 amt->amount_minor > rec->c.claimed_minor))
    return "agent decision: amount above the claim, negative or in another currency";
  if (v == V(GOODWILL_OFFER) &&
      (!priced || (a->outcome != O(PARTIAL_REFUND) && a->outcome != O(COUPON))))
    return "agent decision: goodwill needs an outcome and an amount";
  return NULL;
}

static int on_agent(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__AgentDecision *a = m->env->agent_decision;
  const char *bad = agent_check(a, rec);
  if (bad) return as_tx_reject(m, bad), 0;
  review_item_t it = {.cause = m,
                      .rec = rec,
                      .from_mask = REVIEW_STATE_BIT(MANUAL_REVIEW) | REVIEW_STATE_BIT(ESCALATED),
                      .actor = {"agent", a->agent_id},
                      .decided_at_us = as_now_us()};
  review_policy_shape(x->policy, &rec->c, &it.d);
  it.d.verdict = a->verdict;
  int64_t amount =
      a->amount && a->amount->amount_minor > 0 ? a->amount->amount_minor : rec->c.claimed_minor;
  it.d.amount_minor = amount;
  if (a->verdict == V(APPROVED)) {
    it.d.outcome = a->outcome == O(EXCHANGE) ? O(EXCHANGE) : O(REFUND);
    if (it.d.outcome == O(EXCHANGE)) it.d.return_required = true;
    it.d.rule = "agent.approved";
  } else if (a->verdict == V(GOODWILL_OFFER)) {
    it.d.outcome = a->outcome;
    it.d.percent =
        (int)((__int128)amount * 100 / (rec->c.claimed_minor ? rec->c.claimed_minor : 1));
    it.d.rule = "agent.goodwill";
  } else {
    it.d.rule = a->verdict == V(REJECTED) ? "agent.rejected" : "agent.evidence_requested";
  }
  int rc = as_deadline_cancel(tx, rec->case_id, "sla:review");
  if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "sla:escalated");
  if (rc == 0) rc = review_apply(x, tx, &it, 1);
  return rc;
}

/* ---- disputes and the mediator's final ruling */
static int on_dispute(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__DisputeOpened *d = m->env->dispute_opened;
  if (strcmp(d->seller_id, rec->c.merchant_id) != 0)
    return as_tx_reject(m, "dispute: not the case's seller"), 0;
  if (rec->ruling_final) return as_tx_reject(m, "dispute: ruling_final"), 0;
  if (!text_ok(d->statement, 8000))
    return as_tx_reject(m, "dispute: statement too long or has control bytes"), 0;
  uint32_t from = REVIEW_STATE_BIT(APPROVED) | REVIEW_STATE_BIT(AWAITING_RETURN) |
                  REVIEW_STATE_BIT(RETURN_RECEIVED) | REVIEW_STATE_BIT(INSPECTING) |
                  REVIEW_STATE_BIT(REJECTED);
  if (!((1u << rec->state) & from)) return as_tx_reject(m, "dispute: case_not_disputable"), 0;
  as_case_actor_t seller = {"seller", d->seller_id};
  int rc = as_deadline_cancel(tx, rec->case_id, "return");
  if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "return:transit");
  if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "inspection");
  if (rc == 0) rc = settle_move(tx, m, rec, ST(DISPUTED), from, seller, "dispute.opened", NULL);
  /* a mediator decides now: the buyer hears of the dispute */
  if (rc == 0) rc = review_timers_arm(tx, rec->case_id, "mediation", REVIEW_MEDIATION_WAIT_US);
  if (rc == 0)
    rc = review_publish_outcome(x, tx, m, rec, V(MANUAL_REVIEW), "dispute.opened", ST(DISPUTED),
                                seller);
  return rc;
}

static int ruling_pay(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec,
                      const Aftersales__V1__MediationRuling *r, const char *detail) {
  as_case_actor_t who = {"agent", r->mediator_id};
  uint32_t from = REVIEW_STATE_BIT(DISPUTED);
  if (r->outcome == O(EXCHANGE)) {
    bool done;
    int rc = review_money_exchange(x, tx, m, rec, &done);
    if (rc == 0)
      rc = settle_move(tx, m, rec, ST(EXCHANGED), from, who, "mediation.buyer_upheld", detail);
    return rc ? rc
              : review_publish_outcome(x, tx, m, rec, V(APPROVED), "mediation.buyer_upheld",
                                       ST(EXCHANGED), who);
  }
  int64_t amount =
      r->amount && r->amount->amount_minor > 0 ? r->amount->amount_minor : rec->c.claimed_minor;
  int64_t paid;
  int rc = amount < rec->c.claimed_minor
               ? review_money_refund(x, tx, m, rec, REVIEW_PAY_PARTIAL, amount, false,
                                     "mediation.ruling", &paid)
               : review_money_refund(x, tx, m, rec, REVIEW_PAY_ITEMS, amount, rec->refund_shipping,
                                     "mediation.ruling", &paid);
  if (rc < 0) return rc;
  as_case_state_t to = paid > 0 ? ST(REFUNDED) : ST(CLOSED);
  const char *why = paid > 0 ? "mediation.buyer_upheld" : "refund.nothing_left";
  rc = settle_move(tx, m, rec, to, from, who, why, detail);
  return rc ? rc
            : review_publish_outcome(x, tx, m, rec, paid > 0 ? V(APPROVED) : V(REJECTED), why, to,
                                     who);
}

static int on_ruling(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__MediationRuling *r = m->env->mediation_ruling;
  if (!as_envelope_id_ok(r->mediator_id))
    return as_tx_reject(m, "ruling: mediator id missing or unsafe"), 0;
  if (rec->state != ST(DISPUTED)) return as_tx_reject(m, "ruling: case_not_disputed"), 0;
  if (!text_ok(r->reasoning, 8000))
    return as_tx_reject(m, "ruling: reasoning too long or has control bytes"), 0;
  const Aftersales__V1__Money *a = r->amount;
  if (a && a->amount_minor != 0 &&
      (a->amount_minor < 0 || a->amount_minor > rec->c.claimed_minor ||
       strcmp(a->currency, rec->c.currency) != 0))
    return as_tx_reject(m, "ruling: amount above the claim, negative or in another currency"), 0;
  char detail[9000], reasoning[8600];
  as_log_json_escape(reasoning, sizeof reasoning, r->reasoning);
  snprintf(detail, sizeof detail,
           "{\"final\":true,\"in_favour_of_buyer\":%s,\"outcome\":%d,\"reasoning\":%s}",
           r->in_favour_of_buyer ? "true" : "false", r->outcome, reasoning);
  int rc = set_col(tx, rec, SET_COL("ruling_final"), "t");
  if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "mediation");
  if (rc < 0) return rc;
  if (r->in_favour_of_buyer) return ruling_pay(x, tx, m, rec, r, detail);
  as_case_actor_t who = {"agent", r->mediator_id};
  rc = settle_move(tx, m, rec, ST(REJECTED), REVIEW_STATE_BIT(DISPUTED), who,
                   "mediation.seller_upheld", detail);
  return rc ? rc
            : review_publish_outcome(x, tx, m, rec, V(REJECTED), "mediation.seller_upheld",
                                     ST(REJECTED), who);
}

/* ---- the goods come back */

/* The parcel is on its way: not the buyer's lateness any more. Its
 * transit is the logistics worker's clock (it asks the carrier, and a lost
 * parcel comes back as a DeliveryOutcome, review_logistics). */
static int on_shipped(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  (void)x;
  if (rec->state != ST(AWAITING_RETURN)) return 0;
  int rc =
      set_col_us(tx, rec, SET_COL("return_shipped_at_us"), m->env->return_shipped->shipped_at_us);
  return rc ? rc : as_deadline_cancel(tx, rec->case_id, "return");
}

/* The units the receipt counted are kept (review_logistics): the refund
 * after inspection pays at most those. A late return (late: received after
 * the ship-by date, the buyer had shipped it) is still received and
 * refunded; the timeline row says it was late. */
static int on_received(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__ReturnReceived *rr = m->env->return_received;
  if (rec->state != ST(AWAITING_RETURN)) return 0;
  int rc;
  const char *bad = review_logistics_received(tx, rec, rr, &rc);
  if (bad) {
    char why[96];
    snprintf(why, sizeof why, "return received: %s", bad);
    return as_tx_reject(m, why), 0;
  }
  if (rc == 0) rec->receipt_counted = rr->n_lines > 0 || rr->partial;
  char detail[128];
  snprintf(detail, sizeof detail, "{\"late\":%s,\"partial\":%s,\"lines_counted\":%s}",
           rr->late ? "true" : "false", rr->partial ? "true" : "false",
           rec->receipt_counted ? "true" : "false");
  if (rc == 0) rc = set_col_us(tx, rec, SET_COL("return_received_at_us"), rr->received_at_us);
  if (rc == 0) rc = as_deadline_cancel(tx, rec->case_id, "return");
  if (rc == 0) rc = review_timers_cancel(tx, rec->case_id, "return:transit");
  if (rc == 0)
    rc = settle_move(tx, m, rec, ST(RETURN_RECEIVED), REVIEW_STATE_BIT(AWAITING_RETURN),
                     system_actor, "return.received", detail);
  if (rc == 0)
    rc = review_publish_outcome(x, tx, m, rec, V(UNSPECIFIED), "return.received",
                                ST(RETURN_RECEIVED), system_actor);
  if (rc == 0)
    rc = settle_move(tx, m, rec, ST(INSPECTING), REVIEW_STATE_BIT(RETURN_RECEIVED), system_actor,
                     "inspection.awaited", NULL);
  if (rc == 0)
    rc = review_publish_outcome(x, tx, m, rec, V(UNSPECIFIED), "inspection.awaited", ST(INSPECTING),
                                system_actor);
  /* the inspection worker opens the task and owns its clock */
  if (rc == 0 && rec->inspection_known) rc = review_inspection_settle(x, tx, m, rec);
  return rc;
}

int review_with_case(void *state, as_tx_t *tx, as_msg_t *m, const char *case_id, bool must_exist,
                     review_handler_fn fn) {
  review_t *x = state;
  if (!as_envelope_id_ok(case_id)) {
    if (must_exist) as_tx_reject(m, "case id missing or unsafe");
    return 0;
  }
  review_rec_t rec;
  int rc = review_record_load(tx, case_id, &rec);
  if (rc == -ENOENT) {
    if (must_exist) as_tx_reject(m, "unknown_case: review holds no such case");
    return 0;
  }
  if (rc == 0) rc = fn(x, tx, m, &rec);
  review_rec_free(&rec);
  return rc;
}

/* The routes' entry points (review.h): the payload's case, then its handler. */
#define ROUTE(name, fn, payload, must_exist)                                         \
  int review_on_##name(void *state, as_tx_t *tx, as_msg_t *m) {                      \
    return review_with_case(state, tx, m, m->env->payload->case_id, must_exist, fn); \
  }
ROUTE(evidence, on_evidence, evidence_added, false)
ROUTE(reply, on_reply, buyer_replied, true)
ROUTE(agent, on_agent, agent_decision, true)
ROUTE(dispute, on_dispute, dispute_opened, true)
ROUTE(ruling, on_ruling, mediation_ruling, true)
ROUTE(shipped, on_shipped, return_shipped, false)
ROUTE(received, on_received, return_received, false)
