/* as-intake: the fleet's front door.
 *
 * Consumes order events (into the order projection) and after-sales
 * requests, evidence and buyer messages; validates each request, holds the
 * ones whose order is not known yet, opens a case in the shared case tables
 * for each valid one (exactly once per buyer and idempotency key), routes
 * it, and publishes CaseOpened, the buyer's first acknowledgement, or a
 * RequestRejected with a machine-readable reason. One batch is one
 * transaction: projection first, then the held requests the batch's orders
 * release, then the batch's requests, then follow-ups. */
#include <stddef.h>

#include "as_topics.h"
#include "intake.h"

#define C(f) offsetof(intake_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_INTAKE_HOLD_MS", AS_CFG_INT, "60000", 100, 86400000, C(hold_ms),
     "How long a request for an order not seen or not paid yet is held before it is rejected "
     "(unknown_order, order_not_paid)."},
    {"AS_INTAKE_COMMENT_MAX_BYTES", AS_CFG_INT, "2000", 1, 65536, C(comment_max),
     "Longest comment or message, in UTF-8 bytes."},
    {"AS_INTAKE_EVIDENCE_MAX", AS_CFG_INT, "9", 0, 100, C(evidence_max),
     "Most attachments per request or follow-up."},
    {"AS_INTAKE_ATTACHMENT_MAX_BYTES", AS_CFG_INT, "524288000", 1, 10737418240LL, C(attachment_max),
     "Largest declared attachment size."},
    {"AS_INTAKE_LINES_MAX", AS_CFG_INT, "100", 1, 1000, C(lines_max),
     "Most order lines per request."},
    {"AS_INTAKE_COMPLAINT_ROUTES", AS_CFG_STR,
     "SERVICE_ATTITUDE=customer_care,CASE_HANDLING=quality_assurance,DELIVERY=logistics_ops,"
     "PRODUCT_LISTING=merchant_ops,OTHER=customer_care",
     0, 1024, C(complaint_routes),
     "Complaint type -> department[:hours], comma separated; every type must be mapped."},
    {"AS_INTAKE_COMPLAINT_HOURS", AS_CFG_INT, "72", 1, 8760, C(complaint_hours),
     "Default complaint resolution deadline, in hours."},
    {"AS_INTAKE_REVIEW_HOURS", AS_CFG_INT, "24", 1, 8760, C(review_hours),
     "Review SLA clock, in hours."},
    {"AS_INTAKE_FIRST_RESPONSE_MIN", AS_CFG_INT, "10", 1, 1440, C(first_response_min),
     "First-response SLA clock from submission, in minutes."},
    {"AS_INTAKE_CLOCK_SKEW_S", AS_CFG_INT, "300", 0, 86400, C(clock_skew_s),
     "A submitted_at_us further ahead of intake's clock than this is rejected as "
     "submitted_in_future."},
    {"AS_INTAKE_STAMP_MAX_LAG_S", AS_CFG_INT, "600", 0, 86400, C(stamp_lag_s),
     "Windows are judged on submitted_at_us only if it lies within this before the request's "
     "arrival; else on the arrival."},
    {"AS_INTAKE_OUTREACH_MAX", AS_CFG_INT, "1000", 1, 100000, C(outreach_max),
     "Most proactive cases one SupplierQualityAlert opens (buyers of the flawed lot who have not "
     "complained); eligible lines beyond it are counted (as_intake_outreach_over_bound_total) "
     "and logged."},
};

static const double ack_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                    0.5,   1,      2.5,   5,    10,    30,   60,  600};
#define ACK_HELP                                                                               \
  "Seconds from submission (from=submitted) or from the request event (from=occurred) to the " \
  "buyer's acknowledgement."
static const as_metric_def_t metrics[] = {
    AS_HISTOGRAM(intake_t, ack_submitted, "as_intake_ack_seconds", "from=\"submitted\"", ACK_HELP,
                 ack_bounds),
    AS_HISTOGRAM(intake_t, ack_occurred, "as_intake_ack_seconds", "from=\"occurred\"", ACK_HELP,
                 ack_bounds),
    AS_COUNTER(intake_t, opened, "as_intake_cases_opened_total", NULL, "Cases opened."),
    AS_COUNTER(intake_t, held, "as_intake_requests_held_total", NULL,
               "Requests held for an order not seen yet."),
    AS_COUNTER(intake_t, duplicates, "as_intake_requests_duplicate_total", NULL,
               "Requests whose (buyer, idempotency key) already has a case."),
    AS_COUNTER(intake_t, repeated, "as_intake_requests_repeated_total", NULL,
               "Requests whose request id was already answered (no second answer)."),
    AS_COUNTER(intake_t, breaches, "as_intake_sla_breaches_total", NULL,
               "Cases intake escalated (resolution, pickup) or reminded (escalation follow-up)."),
    AS_COUNTER(intake_t, outreach_opened, "as_intake_outreach_cases_total", NULL,
               "Proactive cases opened for buyers of a lot named by a SupplierQualityAlert."),
    AS_COUNTER(intake_t, outreach_over, "as_intake_outreach_over_bound_total", NULL,
               "Order lines of an alert's lot beyond AS_INTAKE_OUTREACH_MAX, not contacted."),
    AS_COUNTER(intake_t, outreach_ignored[INTAKE_OUTREACH_NO_LOT],
               "as_intake_outreach_alerts_ignored_total", "why=\"no_lot\"",
               "SupplierQualityAlerts that opened nothing: no lot named, or the alert was handled "
               "before."),
    AS_COUNTER(intake_t, outreach_ignored[INTAKE_OUTREACH_REPLAYED],
               "as_intake_outreach_alerts_ignored_total", "why=\"replayed\"",
               "SupplierQualityAlerts that opened nothing: no lot named, or the alert was handled "
               "before."),
};

/* Order events first (the projection, then the held requests they
 * release), then the batch's requests, then follow-ups and supplier alerts
 * one by one. Any other payload on the orders and requests topics is
 * dead-lettered. */
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const as_route_t routes[] = {
    {P(ORDER_PLACED), .batch = intake_orders_apply},
    {P(ORDER_PAID), .batch = intake_orders_apply},
    {P(ORDER_SHIPPED), .batch = intake_orders_apply},
    {P(ORDER_DELIVERED), .batch = intake_orders_apply},
    {P(ORDER_CANCELLED), .batch = intake_orders_apply},
    {P(AFTERSALES_REQUESTED), .batch = intake_requests_apply},
    {P(EVIDENCE_ADDED), .one = intake_followup_apply},
    {P(BUYER_MESSAGE), .one = intake_followup_apply},
    {P(SUPPLIER_QUALITY_ALERT), .one = intake_outreach_apply},
};

/* Intake reads the inspection topic for supplier alerts only: the rest of
 * it (verdicts, inspections, compensation) is other workers' business. */
static const char *const shared_topics[] = {AS_TOPIC_NAME_INSPECTION, NULL};

/* hold:<request id> deadlines are keyed by order id; the cases' clocks
 * (intake_clock) by case id. */
static const as_deadline_kind_t deadlines[] = {
    {"hold:*", intake_hold_expire},
    {"resolution", intake_clock_resolution},
    {"pickup", intake_clock_pickup},
    {"escalation_followup:*", intake_clock_followup},
};

static const as_service_t intake_service = {
    .name = "intake",
    .summary =
        "as-intake: validates after-sales requests against the order projection and opens cases",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(intake_conf_t),
    .state_size = sizeof(intake_t),
    .metrics = metrics,
    .nmetrics = AS_LEN(metrics),
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .refuse_unrouted = true,
    .refused = intake_on_refused,
    .shared_topics = shared_topics,
    .deadlines = deadlines,
    .ndeadlines = AS_LEN(deadlines),
    .init = intake_init,
};

AS_SERVICE_MAIN(intake_service)
