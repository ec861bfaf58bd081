/* as-review: where the money is decided.
 *
 * Consumes case events (CaseOpened, evidence), human decisions (agents,
 * disputes, mediators, buyers' replies to offers), returns and delivery
 * outcomes (logistics: a lost parcel is refunded or reshipped here) and
 * inspections and compensations; decides each case routed to review under the return policy
 * (a readable file, reloaded on SIGHUP), publishes the decision, the
 * return instructions or the goodwill offer, and the refunds and exchanges
 * finance and the warehouses act on. One batch is one transaction: the
 * batch's new cases are decided together with bulk statements, then every
 * other event in order. */
#include <stddef.h>

#include "review.h"

#define C(f) offsetof(review_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_REVIEW_POLICY_FILE", AS_CFG_STR, "", 0, 4096, C(policy_file),
     "Return policy file (format in the README); empty: the built-in default policy. Re-read on "
     "SIGHUP; "
     "a file that does not parse is refused and the policy in force stays."},
};

static const double decision_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60,  600};
#define DECIDED(verdict, label)                                                                \
  AS_COUNTER(review_t, decided[verdict], "as_review_decisions_total", "verdict=\"" label "\"", \
             "Decisions, by verdict.")
#define REFUSED(why, label)                                                                       \
  AS_COUNTER(                                                                                     \
      review_t, integrity_refused[why], "as_review_integrity_refused_total", "why=\"" label "\"", \
      "CaseOpened refused by the integrity check (not in the shared case table, or paid figures " \
      "disagreeing with intake's record or the ledger).")
#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
static const as_metric_def_t metrics[] = {
    AS_HISTOGRAM(review_t, decision_seconds, "as_review_decision_seconds", NULL,
                 "Seconds from CaseOpened to the automatic decision.", decision_bounds),
    DECIDED(V(APPROVED), "approved"),
    DECIDED(V(REJECTED), "rejected"),
    DECIDED(V(AWAITING_EVIDENCE), "awaiting_evidence"),
    DECIDED(V(MANUAL_REVIEW), "manual_review"),
    DECIDED(V(GOODWILL_OFFER), "goodwill_offer"),
    AS_COUNTER(review_t, refunds, "as_review_refunds_total", NULL, "Refunds issued."),
    AS_COUNTER(review_t, refund_minor_capped, "as_review_refunds_capped_total", NULL,
               "Refunds cut to what was left of the paid amount."),
    AS_COUNTER(review_t, exchanges, "as_review_exchanges_total", NULL, "Exchanges requested."),
    AS_COUNTER(review_t, coupons, "as_review_coupons_total", NULL, "Goodwill coupons issued."),
    AS_COUNTER(review_t, reloads_ok, "as_review_policy_reloads_total", "result=\"ok\"",
               "Policy loads."),
    AS_COUNTER(review_t, reloads_refused, "as_review_policy_reloads_total", "result=\"refused\"",
               "Policy loads."),
    AS_COUNTER(review_t, sla_breaches, "as_review_sla_breaches_total", NULL,
               "Review SLA clocks breached."),
    REFUSED(REVIEW_WHY_UNKNOWN_CASE, "unknown_case"),
    REFUSED(REVIEW_WHY_INTAKE, "intake_mismatch"),
    REFUSED(REVIEW_WHY_LEDGER, "ledger_mismatch"),
    AS_COUNTER(review_t, inspections_requested, "as_review_inspections_requested_total", NULL,
               "Claims sent to QC for a look at their evidence (InspectionRequested)."),
    AS_COUNTER(review_t, compensations, "as_review_compensations_total", "result=\"granted\"",
               "CompensationGranted events: granted (refund of what was left and coupon), or "
               "repeated (the compensation id was granted before: nothing paid)."),
    AS_COUNTER(review_t, compensations_repeated, "as_review_compensations_total",
               "result=\"repeated\"",
               "CompensationGranted events: granted (refund of what was left and coupon), or "
               "repeated (the compensation id was granted before: nothing paid)."),
    AS_COUNTER(review_t, logistics_applied, "as_review_delivery_outcomes_total",
               "result=\"applied\"",
               "DeliveryOutcome events: applied (the case closed, resolved, refunded or "
               "reshipped), stale (the case was not in the state the outcome expects: ignored), or "
               "no_case (a stalled parcel lost before any case: nothing to remedy)."),
    AS_COUNTER(review_t, logistics_stale, "as_review_delivery_outcomes_total", "result=\"stale\"",
               "DeliveryOutcome events: applied (the case closed, resolved, refunded or "
               "reshipped), stale (the case was not in the state the outcome expects: ignored), or "
               "no_case (a stalled parcel lost before any case: nothing to remedy)."),
    AS_COUNTER(review_t, logistics_no_case, "as_review_delivery_outcomes_total",
               "result=\"no_case\"",
               "DeliveryOutcome events: applied (the case closed, resolved, refunded or "
               "reshipped), stale (the case was not in the state the outcome expects: ignored), or "
               "no_case (a stalled parcel lost before any case: nothing to remedy)."),
};

/* The batch's new cases first, decided together; then every other event in
 * batch order. Everything else on review's topics is someone else's. */
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const as_route_t routes[] = {
    {P(CASE_OPENED), .batch = review_opened_apply},
    {P(EVIDENCE_ADDED), .one = review_on_evidence},
    {P(BUYER_REPLIED), .one = review_on_reply},
    {P(AGENT_DECISION), .one = review_on_agent},
    {P(DISPUTE_OPENED), .one = review_on_dispute},
    {P(MEDIATION_RULING), .one = review_on_ruling},
    {P(RETURN_SHIPPED), .one = review_on_shipped},
    {P(RETURN_RECEIVED), .one = review_on_received},
    {P(INSPECTION_COMPLETED), .one = review_on_inspected},
    {P(COMPENSATION_GRANTED), .one = review_on_compensation},
    {P(DELIVERY_OUTCOME), .one = review_on_outcome},
};

/* A follow-up re-arms under its twin kind (the name and '+'): the scanner
 * marks the row it fired after the callback. */
static const as_deadline_kind_t deadlines[] = {
    {"evidence", review_timers_evidence},
    {"return", review_timers_return_due},
    {"offer", review_timers_offer},
    {"sla:review", review_timers_sla},
    {"return:transit", review_timers_transit},
    {"return:transit+", review_timers_transit},
    {"inspection", review_timers_inspection},
    {"inspection+", review_timers_inspection},
    {"mediation", review_timers_mediation},
    {"mediation+", review_timers_mediation},
    {"sla:escalated", review_timers_escalated},
    {"sla:escalated+", review_timers_escalated},
    {"redelivery", review_timers_redelivery},
};

static const as_service_t review_service = {
    .name = "review",
    .summary =
        "as-review: decides cases under the return policy; issues refunds, exchanges and goodwill",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(review_conf_t),
    .state_size = sizeof(review_t),
    .metrics = metrics,
    .nmetrics = AS_LEN(metrics),
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .deadlines = deadlines,
    .ndeadlines = AS_LEN(deadlines),
    .init = review_init,
    .fini = review_fini,
    .reload = review_reload,
};

AS_SERVICE_MAIN(review_service)
