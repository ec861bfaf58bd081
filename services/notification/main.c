/* as-notification: what the buyer is told, on which channel, when.
 *
 * Consumes the buyers' contacts and erasures, case openings (a small
 * projection of each case) and every buyer-visible event of the fleet;
 * renders each one's template (a readable file, reloaded on SIGHUP) in the
 * buyer's language for each channel the buyer allows, and records it as
 * deliveries (one per notification and channel, due after the buyer's
 * quiet hours and within the frequency cap, in case order) that the sender
 * sends outside the batch; in-app notices are published at once. The ship-
 * by reminder and the satisfaction survey run on durable deadlines. */
#include <stddef.h>

#include "notification.h"

#define C(f) offsetof(notif_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_NOTIFICATION_TEMPLATES_FILE", AS_CFG_STR, "", 0, 4096, C(templates_file),
     "Templates file (format in the README); empty: the built-in default. Re-read on SIGHUP; a "
     "file that does not parse is refused and the templates in force stay."},
    {"AS_NOTIFICATION_DEFAULT_LOCALE", AS_CFG_STR, "zh-CN", 2, 35, C(default_locale),
     "Locale of a buyer whose own (contact, event, case) has no template."},
    {"AS_NOTIFICATION_DEFAULT_TIME_ZONE", AS_CFG_STR, "Asia/Shanghai", 1, 64, C(default_zone),
     "IANA time zone for dates and quiet hours of a buyer without one."},
    {"AS_NOTIFICATION_REMINDER_HOURS", AS_CFG_INT, "24", 1, 720, C(reminder_hours),
     "Hours before a return's ship-by date that the reminder goes, if it is not shipped."},
    {"AS_NOTIFICATION_SURVEY_DELAY_H", AS_CFG_INT, "24", 0, 720, C(survey_delay_h),
     "Hours after a case closes that the satisfaction survey goes."},
    {"AS_NOTIFICATION_CAP_PER_HOUR", AS_CFG_INT, "10", 1, 1000, C(cap_per_hour),
     "Notifications per buyer per hour (in-app and urgent ones aside); one over the cap waits an "
     "hour."},
    {"AS_NOTIFICATION_ORDER_HOLD_MS", AS_CFG_INT, "1000", 0, 60000, C(order_hold_ms),
     "A case's delivery (its first response aside) is due no earlier than its event's time plus "
     "this, so the case's earlier events read from other topics go first; 0: no hold."},
    {"AS_NOTIFICATION_PARK_HOURS", AS_CFG_INT, "24", 1, 720, C(park_hours),
     "Hours an event read before its case's CaseOpened stays parked (after the case's last one "
     "parked); then dropped, counted and logged."},
    NOTIF_SEND_CONFIG(notif_conf_t, send),
};

#define CNT(field, name, labels, help) AS_COUNTER(notif_t, field, name, labels, help)
#define ANSWER(i) \
  CNT(answers[i - 1], "as_notification_survey_answers_total", "score=\"" #i "\"", "Survey answers.")
static const as_metric_def_t metrics[] = {
    CNT(contacts_stored, "as_notification_contacts_total", "result=\"stored\"", "Contact events."),
    CNT(contacts_stale, "as_notification_contacts_total", "result=\"stale\"", "Contact events."),
    CNT(contacts_refused, "as_notification_contacts_total", "result=\"refused\"",
        "Contact events."),
    CNT(erasures, "as_notification_erasures_total", NULL, "Buyers erased."),
    CNT(told, "as_notification_told_total", NULL, "Notifications written (first time)."),
    CNT(deliveries, "as_notification_deliveries_total", NULL,
        "Deliveries written (one per notification and channel)."),
    CNT(duplicates, "as_notification_duplicates_total", NULL,
        "Notifications already written (the same event told again): nothing new."),
    CNT(in_app, "as_notification_in_app_total", NULL, "In-app notices published."),
    CNT(untold_case, "as_notification_untold_total", "reason=\"unknown_buyer\"",
        "Events not told: no case projection and no buyer id."),
    CNT(untold_channel, "as_notification_untold_total", "reason=\"no_channel\"",
        "Events not told: no template or no channel the buyer can be reached on."),
    CNT(deferred_quiet, "as_notification_deferred_total", "reason=\"quiet_hours\"",
        "Deliveries due later than written."),
    CNT(deferred_cap, "as_notification_deferred_total", "reason=\"cap\"",
        "Deliveries due later than written."),
    CNT(reminders_set, "as_notification_reminders_total", "result=\"armed\"", "Ship-by reminders."),
    CNT(reminders_skipped, "as_notification_reminders_total", "result=\"skipped\"",
        "Ship-by reminders."),
    CNT(surveys_set, "as_notification_surveys_armed_total", NULL, "Surveys armed (a case closed)."),
    ANSWER(1),
    ANSWER(2),
    ANSWER(3),
    ANSWER(4),
    ANSWER(5),
    CNT(reloads_ok, "as_notification_templates_reloads_total", "result=\"ok\"", "Templates loads."),
    CNT(reloads_refused, "as_notification_templates_reloads_total", "result=\"refused\"",
        "Templates loads."),
    CNT(out_of_order, "as_notification_out_of_order_total", NULL,
        "Events told after a later event of their case was sent (read later than the hold)."),
    CNT(parked, "as_notification_parked_total", "result=\"parked\"",
        "Events read before their case's CaseOpened: parked, told, or dropped."),
    CNT(parked_told, "as_notification_parked_total", "result=\"told\"",
        "Events read before their case's CaseOpened: parked, told, or dropped."),
    CNT(parked_dropped, "as_notification_parked_total", "result=\"dropped\"",
        "Events read before their case's CaseOpened: parked, told, or dropped."),
};

/* Batch routes in this order: contacts and erasures, case openings (the
 * batch's other events may be about them; the events parked for them told
 * with the contacts already stored), then every buyer-visible event in
 * batch order (one case's are told in order), its notifications told
 * together at the end; then returns shipped and survey answers. */
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const as_route_t routes[] = {
    {P(BUYER_CONTACT_UPDATED), .batch = notif_contacts_apply},
    {P(BUYER_ERASED), .batch = notif_contacts_apply},
    {P(CASE_OPENED), .batch = notif_cases_apply},
    {P(BUYER_ACKNOWLEDGED), .batch = notif_events_apply},
    {P(REQUEST_REJECTED), .batch = notif_events_apply},
    {P(CASE_STATE_CHANGED), .batch = notif_events_apply},
    {P(REVIEW_DECIDED), .batch = notif_events_apply},
    {P(RETURN_INSTRUCTIONS), .batch = notif_events_apply},
    {P(GOODWILL_OFFERED), .batch = notif_events_apply},
    {P(REFUND_ISSUED), .batch = notif_events_apply},
    {P(EXCHANGE_REQUESTED), .batch = notif_events_apply},
    {P(COUPON_ISSUED), .batch = notif_events_apply},
    {P(INSPECTION_COMPLETED), .batch = notif_events_apply},
    {P(COMPENSATION_GRANTED), .batch = notif_events_apply},
    {P(DELIVERY_OUTCOME), .batch = notif_events_apply},
    {P(TRACKING_NOTICE), .batch = notif_events_apply},
    {P(NOTIFICATION_REQUESTED), .batch = notif_events_apply},
    {P(RETURN_SHIPPED), .one = notif_on_shipped},
    {P(SURVEY_ANSWERED), .one = notif_on_survey},
};

static const as_deadline_kind_t deadlines[] = {
    {"reminder", notif_timers_reminder},
    {"survey", notif_timers_survey},
    {"parked", notif_park_expired},
};

/* A contact the runtime refuses (undecodable, a bad string, the envelope's
 * contract, too large, a handler failure) is dead-lettered without its
 * bytes: they hold a phone number and an e-mail address. */
static const char *const withheld[] = {"aftersales.contacts.v1", NULL};

static const as_service_t notification_service = {
    .name = "notification",
    .summary =
        "as-notification: tells the buyer each step of a case on the right channel, in the "
        "buyer's language, once",
    .config = config,
    .nconfig = AS_LEN(config),
    .conf_size = sizeof(notif_conf_t),
    .state_size = sizeof(notif_t),
    .metrics = metrics,
    .nmetrics = AS_LEN(metrics),
    .routes = routes,
    .nroutes = AS_LEN(routes),
    .withheld_dead_letter_topics = withheld,
    .deadlines = deadlines,
    .ndeadlines = AS_LEN(deadlines),
    .init = notif_init,
    .fini = notif_fini,
    .reload = notif_reload,
    .start = notif_start,
    .stop = notif_stop,
};

AS_SERVICE_MAIN(notification_service)
