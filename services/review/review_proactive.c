/* review_proactive: review's side of proactive outreach to a flawed lot.
 *
 * Intake opens a proactive case (CaseOpened.origin CASE_ORIGIN_PROACTIVE)
 * for each buyer of a lot a SupplierQualityAlert named who had not
 * complained. Nobody claimed anything, so the case is not judged as a
 * buyer's claim: review offers what the policy's proactive_* keys say
 * (a partial refund of proactive_percent of what the line was paid, or an
 * exchange) through the ordinary goodwill machinery (review_apply: the
 * case moves to GOODWILL_OFFERED, GoodwillOffered is published, the
 * "offer" deadline armed at proactive_offer_hours). The buyer's
 * BuyerReplied settles it as any goodwill offer (review_events): declined,
 * or not answered in time, closes the case; an accepted partial refund is
 * refunded through the ledger, capped; an accepted exchange is requested
 * here (ExchangeRequested, once per case) and the case moves APPROVED then
 * EXCHANGED, the goods staying with the buyer. */
#include <string.h>

#include "review.h"

#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define O(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x
#define HOUR_US INT64_C(3600000000)

bool review_proactive_is(const Aftersales__V1__CaseOpened *e) {
  return e->origin == AFTERSALES__V1__CASE_ORIGIN__CASE_ORIGIN_PROACTIVE;
}

/* amount * pct / 100 floored without overflow, for amount >= 0, pct 0..100. */
static int64_t percent_of(int64_t amount, int64_t pct) {
  return amount / 100 * pct + amount % 100 * pct / 100;
}

void review_proactive_decide(const review_policy_t *p, const review_case_t *c,
                             review_decision_t *d) {
  review_rules_t r;
  memset(d, 0, sizeof *d);
  review_policy_rules(p, c, &r);
  d->verdict = V(GOODWILL_OFFER);
  d->rule = "proactive.offer";
  d->outcome = r.proactive_offer;
  d->offer_wait_us = r.proactive_offer_hours * HOUR_US;
  if (d->outcome == O(PARTIAL_REFUND) && c->claimed_minor > 0) {
    d->percent = (int)r.proactive_percent;
    d->amount_minor = percent_of(c->claimed_minor, r.proactive_percent);
  }
}

int review_proactive_exchange(review_t *x, as_tx_t *tx, const as_msg_t *m, review_rec_t *rec) {
  as_case_actor_t buyer = {"buyer", rec->buyer_id};
  const char *ev = m->env->event_id;
  bool done;
  int rc = review_money_exchange(x, tx, m, rec, &done);
  as_case_move_t mv[2] = {
      {.case_id = rec->case_id,
       .to = ST(APPROVED),
       .from_mask = REVIEW_STATE_BIT(GOODWILL_OFFERED),
       .actor = buyer,
       .why = "proactive.exchange_accepted",
       .event_id = ev},
      {.case_id = rec->case_id,
       .to = ST(EXCHANGED),
       .from_mask = REVIEW_STATE_BIT(APPROVED),
       .actor = buyer,
       .why = "exchange.requested",
       .event_id = ev},
  };
  if (rc == 0) rc = as_case_transition_many(tx, mv, 2);
  if (rc == 0 && mv[1].rc == 0)
    rc = review_publish_outcome(x, tx, m, rec, V(APPROVED), "proactive.exchange_accepted",
                                ST(EXCHANGED), buyer);
  return rc;
}
