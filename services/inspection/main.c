/* as-inspection: where goods and evidence are judged.
 *
 * Consumes case openings (a small projection of each case), returns
 * received by the warehouses and review's requests for an evidence-only
 * look, which open inspection tasks (a QC queue with an SLA), the QC
 * agents' verdicts, which it judges against the per-category standards
 * (a readable file, reloaded on SIGHUP), and rectification confirmations.
 * Publishes the tasks, the completed inspections, SLA breaches, and per
 * supplier, SKU, lot and defect code the quality alerts with one
 * compensation for every confirmed case of an alert. Review owns every
 * move of a case; this worker moves none. */
#include <stddef.h>

#include "inspection.h"

#define C(f) offsetof(insp_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_INSPECTION_STANDARDS_FILE", AS_CFG_STR, "", 0, 4096, C(standards_file),
     "Quality standards file (format in the README); empty: the built-in default. Re-read on "
     "SIGHUP; a file that does not parse is refused and the standards in force stay."},
    {"AS_INSPECTION_SLA_HOURS", AS_CFG_INT, "48", 1, 8760, C(sla_hours),
     "Hours a task may wait for its verdict before SlaBreached escalates it."},
    {"AS_INSPECTION_CLUSTER_WINDOW_DAYS", AS_CFG_INT, "30", 1, 3650, C(window_days),
     "Sliding window, in days, over which confirmed defects of one supplier, SKU, lot and defect "
     "code are counted; an open alert closes when a window passes with no new one."},
    {"AS_INSPECTION_CLUSTER_MIN", AS_CFG_INT, "5", 2, 1000, C(cluster_min),
     "Distinct buyers with a confirmed defect in the window that raise a SupplierQualityAlert "
     "(which names their cases: bounded, so the alert stays a small message)."},
};

static const double verdict_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                        0.25,  0.5,    1,     2.5,  5,     10,   60};
#define CNT(field, name, labels, help) AS_COUNTER(insp_t, field, name, labels, help)
static const as_metric_def_t metrics[] = {
    CNT(tasks_return, "as_inspection_tasks_opened_total", "kind=\"return\"", "Tasks opened."),
    CNT(tasks_evidence, "as_inspection_tasks_opened_total", "kind=\"evidence\"", "Tasks opened."),
    CNT(auto_passed, "as_inspection_auto_passed_total", NULL,
        "Tasks passed by their category's auto-pass rule, without a human."),
    CNT(not_inspectable, "as_inspection_not_inspectable_total", NULL,
        "Returns received for a category judged on evidence only: no task opened."),
    CNT(verdicts_pass, "as_inspection_verdicts_total", "result=\"passed\"", "Verdicts judged."),
    CNT(verdicts_defect, "as_inspection_verdicts_total", "result=\"defect\"", "Verdicts judged."),
    CNT(contradictions, "as_inspection_verdict_contradictions_total", NULL,
        "Verdicts whose defect_confirmed flag or defect code contradicted their items (judged by "
        "the items)."),
    CNT(sla_breaches, "as_inspection_sla_breaches_total", NULL,
        "Tasks not judged within AS_INSPECTION_SLA_HOURS, escalated."),
    CNT(alerts_raised, "as_inspection_alerts_total", "event=\"raised\"",
        "Supplier quality alerts."),
    CNT(alerts_rectified, "as_inspection_alerts_total", "event=\"rectified\"",
        "Supplier quality alerts."),
    CNT(alerts_expired, "as_inspection_alerts_total", "event=\"window_passed\"",
        "Supplier quality alerts."),
    CNT(grants, "as_inspection_compensations_total", NULL, "CompensationGranted published."),
    CNT(watched, "as_inspection_clusters_watched_total", NULL,
        "Cluster keys whose confirmed plus unjudged evidenced quality claims reached "
        "AS_INSPECTION_CLUSTER_MIN distinct buyers before an alert (the watch level)."),
    CNT(reloads_ok, "as_inspection_standards_reloads_total", "result=\"ok\"", "Standards loads."),
    CNT(reloads_refused, "as_inspection_standards_reloads_total", "result=\"refused\"",
        "Standards loads."),
    AS_HISTOGRAM(insp_t, verdict_seconds, "as_inspection_verdict_seconds", NULL,
                 "Seconds from QcVerdict (its envelope time) to InspectionCompleted written.",
                 verdict_bounds),
};

/* Batch routes run in this order, each over its messages in batch order:
 * the batch's new cases first, then the tasks they open, then the
 * verdicts on those tasks; rectifications last. */
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const as_route_t routes[] = {
    {P(CASE_OPENED), .batch = insp_cases_apply},
    {P(RETURN_RECEIVED), .batch = insp_received_apply},
    {P(INSPECTION_REQUESTED), .batch = insp_requested_apply},
    {P(QC_VERDICT), .batch = insp_verdicts_apply},
    {P(RECTIFICATION_CONFIRMED), .one = insp_on_rectified},
};

static const as_deadline_kind_t deadlines[] = {
    {"sla:return", insp_timers_sla},
    {"sla:evidence", insp_timers_sla},
    {"cluster:window", insp_timers_window},
};

static const as_service_t inspection_service = {
    .name = "inspection",
    .summary =
        "as-inspection: judges returned goods and evidence against the quality standards; "
        "supplier defect clusters and compensation",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(insp_conf_t),
    .state_size = sizeof(insp_t),
    .metrics = metrics,
    .nmetrics = AS_LEN(metrics),
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .deadlines = deadlines,
    .ndeadlines = AS_LEN(deadlines),
    .init = insp_init,
    .fini = insp_fini,
    .reload = insp_reload,
};

AS_SERVICE_MAIN(inspection_service)
