/* review_decide: the review worker's pure decision function. It applies the
 * rules in force for one case (review_policy_rules: default, strictest
 * category, merchant) in a fixed order, first match wins, and names the
 * rule that decided so a buyer, an agent or an auditor can tell why. It
 * reads no clock and no database: the same case and policy always give the
 * same decision. Money is integer minor units; percentages floor in int64
 * without overflow for any non-negative amount; time windows compare in
 * 128-bit so that no timestamp can wrap. */
#include "review_policy.h"

#include "proto/common.pb-c.h"
#include "proto/review.pb-c.h"

#include <stdio.h>
#include <string.h>

#define HOUR_US INT64_C(3600000000)
#define DAY_US (24 * HOUR_US)

static bool has(uint32_t set, int value) {
  return value >= 0 && value < 32 && (set & (1u << value));
}

/* amount * pct / 100 floored, for amount >= 0 and pct in 0..100: split
 * amount = 100q + r so that neither product can overflow. */
static int64_t percent_of(int64_t amount, int64_t pct) {
  return amount / 100 * pct + amount % 100 * pct / 100;
}

/* to - from <= days, with no overflow whatever the timestamps. */
static bool within_days(int64_t from, int64_t to, int64_t days) {
  return (__int128)to - from <= (__int128)days * DAY_US;
}

static void verdict(review_decision_t *d, int v, const char *rule) {
  d->verdict = v;
  d->rule = rule;
}

static void manual(review_decision_t *d, const char *rule) {
  verdict(d, AFTERSALES__V1__VERDICT__VERDICT_MANUAL_REVIEW, rule);
}

static bool reviewable(int case_type) {
  return case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_RETURN_REFUND ||
         case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_REFUND_ONLY ||
         case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_EXCHANGE ||
         case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_QUALITY_CLAIM;
}

/* More cases than max_return_rate_pct of the buyer's orders, counted only
 * once the buyer has min_orders_for_rate orders (a first return from a new
 * buyer is not a signal). */
static bool rate_over(const review_rules_t *r, const review_case_t *c) {
  return c->orders >= r->min_orders_for_rate &&
         (int64_t)c->cases * 100 > r->max_return_rate_pct * (int64_t)c->orders;
}

/* Where and how the goods go back. The region's texts fit the decision's
 * buffers: the parser refuses longer ones. */
static void return_instructions(const review_policy_t *p, const review_rules_t *r,
                                const review_case_t *c, review_decision_t *d) {
  const review_rules_t *region = review_policy_region(p, c->region);

  d->return_required = true;
  d->return_wait_us = r->return_days * DAY_US;
  d->return_method =
      has(r->return_methods, c->return_method) ? c->return_method : r->default_return_method;
  snprintf(d->warehouse_id, sizeof d->warehouse_id, "%s",
           region->warehouse ? region->warehouse : "");
  snprintf(d->return_address, sizeof d->return_address, "%s",
           region->address ? region->address : "");
  snprintf(d->packaging, sizeof d->packaging, "%s", r->packaging ? r->packaging : "");
}

static void approve(const review_policy_t *p, const review_rules_t *r, const review_case_t *c,
                    bool seller_fault, review_decision_t *d) {
  int64_t cheap;

  verdict(d, AFTERSALES__V1__VERDICT__VERDICT_APPROVED, "approve.return_refund");
  d->amount_minor = c->claimed_minor;
  d->shipping_payer = c->reason > 0 && c->reason < REVIEW_NREASONS ? r->shipping[c->reason] : 0;
  d->outcome = AFTERSALES__V1__OUTCOME__OUTCOME_REFUND;
  if (c->case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_EXCHANGE) {
    d->outcome = AFTERSALES__V1__OUTCOME__OUTCOME_EXCHANGE;
    d->rule = "approve.exchange";
    return_instructions(p, r, c, d);
    return;
  }
  /* An exchange refunds nothing, so only refunds return the shipping fee. */
  d->refund_shipping = seller_fault && r->refund_shipping_on_seller_fault;
  d->shipping_refund = r->shipping_refund;
  if (review_money_find(&r->refund_only_max, c->currency, &cheap) && c->claimed_minor <= cheap) {
    d->rule = "approve.refund_only_cheap";
    return;
  }
  if (c->case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_REFUND_ONLY)
    d->rule = "approve.return_required";
  return_instructions(p, r, c, d);
}

/* Out of the claim window but within goodwill: a partial refund for a severe
 * problem from a buyer of good standing, a coupon otherwise. An unknown
 * first order (0) is no tenure. */
static void goodwill(const review_rules_t *r, const review_case_t *c, review_decision_t *d) {
  bool tenure = c->first_order_at_us > 0 && (__int128)c->submitted_at_us - c->first_order_at_us >=
                                                (__int128)r->goodwill_min_tenure_days * DAY_US;

  verdict(d, AFTERSALES__V1__VERDICT__VERDICT_GOODWILL_OFFER, "goodwill.out_of_window");
  d->offer_wait_us = r->offer_hours * HOUR_US;
  if (has(r->severe, c->reason) && tenure && !rate_over(r, c)) {
    d->outcome = AFTERSALES__V1__OUTCOME__OUTCOME_PARTIAL_REFUND;
    d->percent = (int)r->goodwill_percent;
    d->amount_minor = percent_of(c->claimed_minor, r->goodwill_percent);
  } else {
    d->outcome = AFTERSALES__V1__OUTCOME__OUTCOME_COUPON;
    d->amount_minor = percent_of(c->claimed_minor, r->coupon_percent);
  }
}

/* Rule qc.evidence: a no-return claim of a listed type and (seller-fault)
 * reason, inside the claim window with a photo or video, is judged by a QC
 * agent from its evidence; a confirmed defect then pays what an approval
 * would. A buyer's own reason has no defect to confirm. */
static bool qc_applies(const review_rules_t *r, const review_case_t *c) {
  return r->qc_evidence && has(r->qc_case_types, c->case_type) && has(r->qc_reasons, c->reason) &&
         has(r->seller_fault, c->reason) && c->has_photo_or_video && c->delivered_at_us != 0 &&
         within_days(c->delivered_at_us, c->submitted_at_us, r->claim_days);
}

static void qc(const review_policy_t *p, const review_rules_t *r, const review_case_t *c,
               review_decision_t *d) {
  approve(p, r, c, true, d);
  /* no goods come back: nothing of the return instructions stays */
  d->return_required = false;
  d->return_wait_us = 0;
  d->return_method = 0;
  d->warehouse_id[0] = d->return_address[0] = d->packaging[0] = '\0';
  d->inspect = true;
  manual(d, "qc.evidence");
}

static void decide_seller_fault(const review_policy_t *p, const review_rules_t *r,
                                const review_case_t *c, review_decision_t *d) {
  if (within_days(c->delivered_at_us, c->submitted_at_us, r->claim_days))
    approve(p, r, c, true, d);
  else if (within_days(c->delivered_at_us, c->submitted_at_us, r->claim_days + r->goodwill_days) &&
           r->goodwill_days > 0)
    goodwill(r, c, d);
  else
    verdict(d, AFTERSALES__V1__VERDICT__VERDICT_REJECTED, "window.claim_expired");
}

static void decide_buyer_reason(const review_policy_t *p, const review_rules_t *r,
                                const review_case_t *c, review_decision_t *d) {
  if (r->non_returnable)
    verdict(d, AFTERSALES__V1__VERDICT__VERDICT_REJECTED, "category.non_returnable");
  else if (!within_days(c->delivered_at_us, c->submitted_at_us, r->no_reason_days))
    verdict(d, AFTERSALES__V1__VERDICT__VERDICT_REJECTED, "window.no_reason_expired");
  else if (!c->declared_unused)
    verdict(d, AFTERSALES__V1__VERDICT__VERDICT_REJECTED, "no_reason.not_unused");
  else
    approve(p, r, c, false, d);
}

/* Rules 1-2 need no policy merge; the input checks keep the array index
 * (reason) and the percentage arithmetic (amount >= 0) in range. */
static bool precheck(const review_case_t *c, review_decision_t *d) {
  if (!reviewable(c->case_type))
    manual(d, "type.not_reviewable");
  else if (c->reason <= 0 || c->reason >= REVIEW_NREASONS)
    manual(d, "reason.unknown");
  else if (c->claimed_minor < 0)
    manual(d, "amount.invalid");
  else
    return true;
  return false;
}

void review_decide(const review_policy_t *p, const review_case_t *c, review_decision_t *d) {
  review_rules_t r;
  int64_t above;

  memset(d, 0, sizeof *d);
  if (!precheck(c, d)) return;
  review_policy_rules(p, c, &r);
  if (!review_money_find(&r.manual_review_above, c->currency, &above))
    manual(d, "policy.currency_unknown");
  else if (has(r.evidence_required, c->reason) && !c->has_photo_or_video) {
    verdict(d, AFTERSALES__V1__VERDICT__VERDICT_AWAITING_EVIDENCE, "evidence.required");
    d->evidence_wait_us = r.evidence_days * DAY_US;
  } else if (c->claims_on_order >= r.max_claims_per_order)
    manual(d, "abuse.repeated_claims");
  else if (rate_over(&r, c))
    manual(d, "abuse.return_rate");
  else if (qc_applies(&r, c))
    qc(p, &r, c, d);
  else if (c->claimed_minor > above)
    manual(d, "amount.manual_threshold");
  else if (c->delivered_at_us == 0)
    manual(d, "order.not_delivered");
  else if (has(r.seller_fault, c->reason))
    decide_seller_fault(p, &r, c, d);
  else
    decide_buyer_reason(p, &r, c, d);
}

static void shape(const review_policy_t *p, const review_case_t *c, bool lost,
                  review_decision_t *d) {
  review_rules_t r;

  memset(d, 0, sizeof *d);
  review_policy_rules(p, c, &r);
  bool seller_pays = c->reason > 0 && c->reason < REVIEW_NREASONS &&
                     r.shipping[c->reason] == AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_SELLER;
  approve(p, &r, c, has(r.seller_fault, c->reason) || (lost && seller_pays), d);
  d->evidence_wait_us = r.evidence_days * DAY_US;
  d->return_wait_us = r.return_days * DAY_US;
  d->offer_wait_us = r.offer_hours * HOUR_US;
}

/* For decisions made by people: the approval's shape and every deadline,
 * so an agent's verdict carries the policy's instructions. */
void review_policy_shape(const review_policy_t *p, const review_case_t *c, review_decision_t *d) {
  shape(p, c, false, d);
}

void review_policy_shape_lost(const review_policy_t *p, const review_case_t *c,
                              review_decision_t *d) {
  shape(p, c, true, d);
}

int64_t review_policy_redelivery_close_us(const review_policy_t *p, const review_case_t *c) {
  review_rules_t r;

  review_policy_rules(p, c, &r);
  return r.redelivery_close_days * DAY_US;
}
