/* review_policy: the return policy as a readable text file, and the pure
 * decision function that applies it to one case.
 *
 * A policy is parsed whole; a text that does not parse or contradicts
 * itself is refused with "line N: what is wrong" and the caller keeps the
 * policy it had. A parsed policy is immutable: the worker swaps the pointer
 * on SIGHUP between batches.
 *
 * review_decide needs no database and no clock: everything it reads is in
 * review_case_t (times are the request's and the delivery's), so the same
 * case and policy always give the same decision, and every decision names
 * the rule that made it (review_decision_t.rule) and the policy version.
 *
 * Ownership: review_policy_parse/load return a policy owned by the caller
 * (free with review_policy_free); strings in review_case_t are borrowed for
 * the call; review_decision_t holds static strings (rule) or copies. */
#ifndef REVIEW_POLICY_H
#define REVIEW_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct review_policy review_policy_t;

/* The policy compiled in, used when AS_REVIEW_POLICY_FILE is empty; the
 * README shows the same text. */
extern const char review_policy_default[];

/* Parses len bytes of policy text. Returns the policy, or NULL with err
 * filled ("line 12: unknown key \"no_reason_dayz\""). */
review_policy_t *review_policy_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses a file (at most 1 MiB); NULL with err on failure. */
review_policy_t *review_policy_load(const char *path, char *err, size_t errlen);
void review_policy_free(review_policy_t *p); /* NULL is a no-op */
/* The version line of the policy; borrowed from p. */
const char *review_policy_version(const review_policy_t *p);

/* Enum values are the proto's (CaseType, Reason, Outcome, ReturnMethod,
 * PayerParty, Verdict) as plain ints, so this header needs no protobuf. */
typedef struct review_line {
  const char *line_id, *sku, *category;
  int32_t quantity;   /* claimed units */
  int64_t unit_minor; /* list price per unit, in the case's currency */
  int32_t purchased;  /* units bought on the line */
  int64_t paid_minor; /* the amount paid allocated to the whole line (all purchased units) */
  const char *supplier_id, *lot_id; /* "" when unknown (QC's InspectionRequested names them) */
} review_line_t;

/* shipping_refund: what a seller-fault refund covering part of the order
 * returns of the shipping fee's allocation. 0 (cases decided before the
 * key existed) counts as whole. */
enum { REVIEW_SHIP_WHOLE = 1, REVIEW_SHIP_PRO_RATA = 2, REVIEW_SHIP_NONE = 3 };

typedef struct review_case {
  int case_type, reason, preferred_outcome, return_method;
  const char *merchant_id, *currency, *region; /* currency: ISO 4217 */
  const review_line_t *lines;
  size_t nlines;
  int64_t claimed_minor;   /* what the claimed units were paid: sum of share(paid_minor, quantity,
                              purchased) */
  int64_t delivered_at_us; /* 0: not delivered */
  int64_t submitted_at_us; /* when the buyer asked */
  bool has_photo_or_video, declared_unused;
  /* buyer history when the case opened */
  int64_t first_order_at_us;
  int32_t orders, cases, claims_on_order;
} review_case_t;

typedef struct review_decision {
  int verdict; /* Verdict: APPROVED, REJECTED, AWAITING_EVIDENCE, MANUAL_REVIEW, GOODWILL_OFFER */
  int outcome; /* Outcome: REFUND, EXCHANGE (approved); PARTIAL_REFUND, COUPON (goodwill) */
  bool return_required; /* approved: the goods come back before money or replacement */
  const char *rule;     /* static: the rule that decided, e.g. "window.no_reason_expired" */
  int shipping_payer;   /* PayerParty for the return */
  int64_t amount_minor; /* approved amount, or the goodwill offer's value */
  int percent;          /* goodwill partial refund: percent of the claimed amount */
  bool refund_shipping; /* approved refund also returns the order's shipping fee */
  int shipping_refund;  /* REVIEW_SHIP_*: how much of it when the refund covers part of the order */
  /* verdict MANUAL_REVIEW, rule "qc.evidence": a QC agent judges the claim's
   * evidence (InspectionRequested, case INSPECTING); amount_minor and the
   * refund fields are what a confirmed defect pays */
  bool inspect;
  /* deadlines, as durations from the decision */
  int64_t evidence_wait_us, return_wait_us, offer_wait_us;
  /* return instructions (approved with return_required) */
  int return_method; /* the buyer's choice if the policy allows it, else the default */
  char warehouse_id[64];
  char return_address[256];
  char packaging[256];
} review_decision_t;

/* Decides case c under policy p. Never fails: what the rules cannot decide
 * goes to MANUAL_REVIEW with a rule saying why. */
void review_decide(const review_policy_t *p, const review_case_t *c, review_decision_t *d);

/* ---- Internal: shared by review_policy.c and review_decide.c only; the
 * worker uses the API above. ---- */

enum { REVIEW_NREASONS = 12, REVIEW_MAX_CURRENCIES = 16 };

/* Per-currency amounts in minor units ("CNY:200000 USD:30000"). */
typedef struct review_money_list {
  size_t n;
  struct {
    char currency[4];
    int64_t minor;
  } v[REVIEW_MAX_CURRENCIES];
} review_money_list_t;

/* The rules of one policy section, or the rules in force for one case.
 * `set` has bit k when the section gave key k itself. Reason and method
 * sets are bit masks indexed by the proto enum value. The strings are
 * owned by the section that parsed them and borrowed everywhere else. */
typedef struct review_rules {
  uint64_t set;
  int64_t no_reason_days, claim_days, goodwill_days, evidence_days, return_days;
  int64_t max_claims_per_order, max_return_rate_pct, min_orders_for_rate;
  int64_t goodwill_percent, coupon_percent, goodwill_min_tenure_days, offer_hours;
  bool non_returnable, refund_shipping_on_seller_fault;
  uint32_t evidence_required, seller_fault, severe, return_methods;
  int default_return_method;
  int shipping_refund;           /* REVIEW_SHIP_* */
  int shipping[REVIEW_NREASONS]; /* PayerParty per Reason */
  /* proactive outreach: Outcome PARTIAL_REFUND or EXCHANGE, the refund's
   * percent of what the lines were paid, hours the buyer has to answer */
  int proactive_offer;
  int64_t proactive_percent, proactive_offer_hours;
  /* logistics outcomes: days a redelivered (RESOLVED) case stays open */
  int64_t redelivery_close_days;
  review_money_list_t manual_review_above, refund_only_max;
  char *packaging, *warehouse, *address;
  /* QC of the evidence (issue 12): claims of these case types and reasons,
   * in the claim window with a photo or video, go to a QC agent instead of
   * being decided by rule; a [category] or [merchant] may opt out */
  uint32_t qc_case_types, qc_reasons;
  bool qc_evidence;
} review_rules_t;

/* Fills *out with the rules in force for case c: [default], then the
 * strictest of the lines' [category] sections, then [merchant]. The
 * strings in *out are borrowed from p. */
void review_policy_rules(const review_policy_t *p, const review_case_t *c, review_rules_t *out);
/* The [region code] section, or [region *] when code is NULL or unknown;
 * borrowed from p, never NULL for a parsed policy. */
const review_rules_t *review_policy_region(const review_policy_t *p, const char *code);
/* The amount for currency in l; false when l has no figure for it. */
bool review_money_find(const review_money_list_t *l, const char *currency, int64_t *minor);

/* Fills what an approval of c would look like under p (rule 8 of
 * review_decide: outcome, return_required, shipping payer, refund_shipping,
 * return instructions) and every deadline duration, whatever the verdict
 * review_decide would reach: for decisions made by people. */
void review_policy_shape(const review_policy_t *p, const review_case_t *c, review_decision_t *d);
/* review_policy_shape for a parcel the carrier lost (issue 13): the buyer
 * is refunded for goods that never reached them, so there is no return
 * whose shipping shipping.<REASON> could charge; that key then says who
 * bears the carriage, and a reason whose shipping the seller bears is a
 * seller-fault refund (the order's shipping fee comes back by
 * refund_shipping_on_seller_fault and shipping_refund), as is a
 * seller_fault reason. */
void review_policy_shape_lost(const review_policy_t *p, const review_case_t *c,
                              review_decision_t *d);

/* The offer made unasked to a buyer of a flawed lot (a proactive case):
 * GOODWILL_OFFER, rule "proactive.offer", outcome and percent from the
 * proactive_* keys in force for c, amount that percent of c's claimed
 * amount (what its lines were paid), floored; an exchange carries no
 * amount. Pure, as review_decide (review_proactive.c). */
void review_proactive_decide(const review_policy_t *p, const review_case_t *c,
                             review_decision_t *d);

/* How long a case the carrier redelivers stays RESOLVED before it closes
 * (redelivery_close_days in force for c), in microseconds. */
int64_t review_policy_redelivery_close_us(const review_policy_t *p, const review_case_t *c);

/* True if the policy counts reason (a Reason value) as the seller's fault. */
bool review_policy_seller_fault(const review_policy_t *p, int reason);

#endif
