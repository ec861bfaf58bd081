/* as-logistics: carriers, parcels and return parcels.
 *
 * Consumes orders (buyers, shipments, deliveries), carriers' tracking
 * scans and verification answers, case openings, review's return
 * instructions, buyers' return shipments, warehouse receipts and agents'
 * receipt links. Keeps the tracking projection (one row per parcel, every
 * scan once), asks carriers about delivered-not-received and not-received
 * cases, stalled parcels and late return parcels (CarrierVerificationRequested
 * with an answer deadline), turns their answers, or their silence, into a
 * DeliveryOutcome by the outcome rules, matches warehouse receipts to the
 * returns awaited (ReturnReceived) or queues them for agents
 * (ReceiptUnmatched), and tells buyers about their parcels (TrackingNotice).
 * It moves a logistics case only to carrier verification or, when it has
 * no flow for it, to the logistics desk; review does every other move. */
#include <stddef.h>

#include "logistics.h"

#define C(f) offsetof(logi_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_LOGISTICS_CARRIER_ANSWER_HOURS", AS_CFG_INT, "48", 1, 8760, C(answer_hours),
     "Hours a carrier has to answer an inquiry; then the default outcome is decided in the "
     "buyer's favour and SlaBreached (clock carrier_answer) published."},
    {"AS_LOGISTICS_STALL_HOURS", AS_CFG_INT, "48", 1, 8760, C(stall_hours),
     "Hours without a scan after which a forward parcel not delivered is stalled: the carrier is "
     "asked and the buyer told."},
    {"AS_LOGISTICS_STALL_HOURS_BY_CARRIER", AS_CFG_STR, "", 0, 1024, C(stall_by_carrier),
     "Per-carrier stall hours, e.g. \"sf=24,yto=72\" (carrier names case-insensitive); others use "
     "AS_LOGISTICS_STALL_HOURS."},
    {"AS_LOGISTICS_DELIVERY_DAYS", AS_CFG_INT, "7", 1, 365, C(delivery_days),
     "Expected delivery, in days after shipping, when OrderShipped carries no "
     "expected_delivery_us."},
    {"AS_LOGISTICS_RETURN_TRANSIT_DAYS", AS_CFG_INT, "10", 1, 365, C(transit_days),
     "Days a shipped return parcel may take to reach the warehouse before the carrier is asked."},
    {"AS_LOGISTICS_FOLLOWUP_HOURS", AS_CFG_INT, "24", 1, 8760, C(followup_hours),
     "Hours between SlaBreached reminders while a case logistics escalated stays escalated, or "
     "one it decided stays in carrier verification."},
    {"AS_LOGISTICS_OUTCOME_RULES", AS_CFG_STR, "", 0, 1024, C(rules),
     "Carrier finding -> remedy on a buyer's case, e.g. \"lost=refund\" (findings "
     "delivered_confirmed, redelivery, lost, in_transit; remedies none, refund, reship, preferred, "
     "wait); unnamed findings keep the defaults (README \"Logistics rules\")."},
};

#define CNT(field, name, labels, help) AS_COUNTER(logi_t, field, name, labels, help)
static const as_metric_def_t metrics[] = {
    CNT(scans, "as_logistics_scans_total", "result=\"new\"", "Tracking scans projected."),
    CNT(scans_repeated, "as_logistics_scans_total", "result=\"repeated\"",
        "Tracking scans projected."),
    CNT(scans_early, "as_logistics_shipments_after_scans_total", NULL,
        "Shipments whose scans came first (kept and matched)."),
    CNT(shipments, "as_logistics_shipments_total", NULL, "OrderShipped projected."),
    CNT(deliveries, "as_logistics_deliveries_total", NULL, "OrderDelivered projected."),
    CNT(inq_dbnr, "as_logistics_inquiries_total", "kind=\"delivered_not_received\"",
        "Carrier inquiries opened."),
    CNT(inq_stalled, "as_logistics_inquiries_total", "kind=\"stalled\"",
        "Carrier inquiries opened."),
    CNT(inq_not_received, "as_logistics_inquiries_total", "kind=\"not_received\"",
        "Carrier inquiries opened."),
    CNT(inq_return, "as_logistics_inquiries_total", "kind=\"return_transit\"",
        "Carrier inquiries opened."),
    CNT(answered_in_time, "as_logistics_verifications_total", "result=\"answered_in_time\"",
        "Carrier inquiries closed, by how."),
    CNT(answered_late, "as_logistics_verifications_total", "result=\"answered_late\"",
        "Carrier inquiries closed, by how."),
    CNT(defaulted, "as_logistics_verifications_total", "result=\"defaulted\"",
        "Carrier inquiries closed, by how."),
    AS_GAUGE(logi_t, answered_ratio, "as_logistics_verifications_answered_in_time_ratio", NULL,
             "Share of this instance's closed inquiries answered within the deadline (seed "
             "target 0.9)."),
    CNT(answers_refused, "as_logistics_answers_refused_total", NULL,
        "Carrier answers dead-lettered (unknown inquiry or case, already answered, malformed)."),
    CNT(stalls_resolved, "as_logistics_stalls_resolved_total", NULL,
        "Stalled inquiries closed by a scan (TrackingNotice MOVING_AGAIN)."),
    CNT(outcomes, "as_logistics_outcomes_total", NULL, "DeliveryOutcome published."),
    CNT(escalated, "as_logistics_cases_escalated_total", NULL,
        "Logistics cases without a flow here (reason or parcel unknown), escalated."),
    CNT(cases_not_open, "as_logistics_cases_not_open_total", NULL,
        "Logistics cases no longer OPEN when logistics would move them (left alone, logged)."),
    CNT(receipts_matched, "as_logistics_receipts_total", "result=\"matched\"",
        "Warehouse receipts."),
    CNT(receipts_unmatched, "as_logistics_receipts_total", "result=\"unmatched\"",
        "Warehouse receipts."),
    CNT(receipts_released, "as_logistics_receipts_total", "result=\"released\"",
        "Warehouse receipts."),
    CNT(receipts_repeated, "as_logistics_receipts_total", "result=\"repeated\"",
        "Warehouse receipts."),
    AS_GAUGE(logi_t, exceptions, "as_logistics_receipt_exceptions", NULL,
             "Unmatched receipts waiting for an agent (the exception queue), as last counted."),
};

/* Orders and scans first (bulk), then the cases, then the per-message
 * events that may need both. */
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const as_route_t routes[] = {
    {P(ORDER_PLACED), .batch = logi_placed_apply},
    {P(ORDER_SHIPPED), .batch = logi_shipped_apply},
    {P(TRACKING_SCAN), .batch = logi_scans_apply},
    {P(ORDER_DELIVERED), .batch = logi_delivered_apply},
    {P(CASE_OPENED), .batch = logi_cases_apply},
    {P(RETURN_INSTRUCTIONS), .one = logi_on_instructions},
    {P(RETURN_SHIPPED), .one = logi_on_return_shipped},
    {P(CARRIER_VERIFICATION_ANSWERED), .one = logi_on_answer},
    {P(WAREHOUSE_RECEIPT), .one = logi_on_receipt},
    {P(RECEIPT_LINKED), .one = logi_on_linked},
};

static const as_deadline_kind_t deadlines[] = {
    {"stall", logi_timers_stall},          {"answer", logi_timers_answer},
    {"answer:parcel", logi_timers_answer}, {"followup:*", logi_timers_followup},
    {"expected", logi_timers_expected},    {"return_transit", logi_timers_transit},
};

/* Every consumed topic carries others' events (and this worker's own). */
static const char *const shared[] = {AS_TOPIC_NAME_ORDERS, AS_TOPIC_NAME_CASES,
                                     AS_TOPIC_NAME_REVIEW, AS_TOPIC_NAME_LOGISTICS, NULL};

static const as_service_t logistics_service = {
    .name = "logistics",
    .summary =
        "as-logistics: tracking projection, carrier verification, stalled parcels, return "
        "parcels matched and received",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(logi_conf_t),
    .state_size = sizeof(logi_t),
    .metrics = metrics,
    .nmetrics = AS_LEN(metrics),
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .refuse_unrouted = true,
    .shared_topics = shared,
    .deadlines = deadlines,
    .ndeadlines = AS_LEN(deadlines),
    .init = logi_init,
};

AS_SERVICE_MAIN(logistics_service)
