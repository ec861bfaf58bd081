/* logistics: the service's private declarations, shared by its modules.
 *
 * main.c is its tables (configuration, metrics, payload routes, deadline
 * kinds); the modules: logi_state (the outcome rules and per-carrier stall
 * hours, parsed at start), logi_parcels (the tracking projection: orders,
 * shipments, deliveries and scans, in bulk per batch; the stall clock),
 * logi_cases (CaseOpened: the projection and the flow each logistics
 * reason starts), logi_inquiry (carrier inquiries: asked, answered,
 * defaulted at their deadline; DeliveryOutcome by the rules), logi_returns
 * (expected returns, return parcels, warehouse receipts matched or queued,
 * agents' links, the return-transit clock) and logi_out (what they share:
 * envelopes on a topic, ids, input checks).
 *
 * Ownership: logi_t is the runtime's state block; nothing in it is
 * allocated (the rule table is fixed size). Everything a batch allocates
 * is released before the handler returns. */
#ifndef LOGISTICS_H
#define LOGISTICS_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "as_topics.h"
#include "as_uuid.h"
#include "as_worker.h"

#define LOGI_MAX_LINES 100 /* lines a case or a receipt may carry */
#define LOGI_HOUR_US (3600LL * 1000000)
#define LOGI_DAY_US (24 * LOGI_HOUR_US)
#define LOGI_MAX_CARRIERS 16 /* per-carrier stall overrides */
#define LOGI_TEXT_MAX 256    /* status, location, proof, condition */

#define LOGI_FINDINGS 5 /* DeliveryFinding values 0..4 */

/* What a carrier's finding on a buyer's case leads to (README "Logistics
 * rules"): no money, a refund, a reship, the buyer's preferred outcome
 * (refund unless they asked for a reship), or a new wait. */
typedef enum {
  LOGI_REMEDY_UNSET = 0,
  LOGI_REMEDY_NONE,
  LOGI_REMEDY_REFUND,
  LOGI_REMEDY_RESHIP,
  LOGI_REMEDY_PREFERRED,
  LOGI_REMEDY_WAIT,
} logi_remedy_t;

typedef struct logi_conf {
  const char *rules, *stall_by_carrier;
  long long answer_hours, stall_hours, delivery_days, transit_days, followup_hours;
} logi_conf_t;

typedef struct logi_carrier_hours {
  char carrier[32];
  long long hours;
} logi_carrier_hours_t;

typedef struct logi {
  const as_log_t *log;
  const logi_conf_t *conf;
  logi_remedy_t rule[LOGI_FINDINGS];
  logi_carrier_hours_t stall[LOGI_MAX_CARRIERS];
  size_t nstall;
  as_counter_t *scans, *scans_repeated, *scans_early, *shipments, *deliveries;
  as_counter_t *inq_dbnr, *inq_stalled, *inq_not_received, *inq_return;
  as_counter_t *answered_in_time, *answered_late, *defaulted, *answers_refused;
  as_counter_t *stalls_resolved, *outcomes, *escalated, *cases_not_open;
  as_counter_t *receipts_matched, *receipts_unmatched, *receipts_released, *receipts_repeated;
  as_gauge_t *answered_ratio, *exceptions;
} logi_t;

/* ---- logi_state.c */
AS_MUST_CHECK int logi_init(as_worker_t *w, const void *conf, void *state);
/* Parses "finding=remedy,..." into rule[] (unnamed findings keep the
 * defaults). Returns 0 or -EINVAL with the reason in err. */
AS_MUST_CHECK int logi_rules_parse(const char *s, logi_remedy_t rule[LOGI_FINDINGS], char *err,
                                   size_t errlen);
/* The stall time of carrier (case-insensitive override, else the default). */
int64_t logi_stall_us(const logi_t *x, const char *carrier);

/* ---- logi_parcels.c: batch routes of the tracking projection */
AS_MUST_CHECK int logi_placed_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int logi_shipped_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int logi_delivered_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int logi_scans_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
/* Deadline kind "stall", keyed by the parcel id. */
AS_MUST_CHECK int logi_timers_stall(void *state, as_tx_t *tx, const char *parcel_id,
                                    const char *kind, int64_t due_us);

/* ---- logi_cases.c */
AS_MUST_CHECK int logi_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
/* Deadline kind "expected", keyed by the case id (a not-received case
 * opened before the expected delivery date). */
AS_MUST_CHECK int logi_timers_expected(void *state, as_tx_t *tx, const char *case_id,
                                       const char *kind, int64_t due_us);

/* ---- logi_inquiry.c */
/* What an inquiry asks about; strings borrowed. */
typedef struct logi_ask {
  int kind;      /* InquiryKind */
  int direction; /* ParcelDirection */
  const char *case_id, *order_id, *buyer_id, *carrier, *tracking_number, *shipment_id;
  const char *locale, *last_status;
  int64_t parcel_id, last_scan_us; /* parcel_id 0: none */
  int ordinal;                     /* the inquiry's n if the caller knows it, else 0 */
  int notice;                      /* TrackingNoticeKind to the buyer, 0: none */
  int64_t ask_carrier_at_us;       /* TrackingNotice.ask_carrier_at_us */
} logi_ask_t;
/* Records the inquiry (its ordinal n from the earlier ones of its kind on
 * its case or parcel), arms its answer deadline and publishes
 * CarrierVerificationRequested (and the notice). id receives the inquiry
 * id. Returns 0 or an as_db error. */
AS_MUST_CHECK int logi_inquiry_open(logi_t *x, as_tx_t *tx, const as_msg_t *cause,
                                    const logi_ask_t *a, char id[AS_UUID_STRLEN + 1]);
AS_MUST_CHECK int logi_on_answer(void *state, as_tx_t *tx, as_msg_t *m);
/* Deadline kinds "answer" (keyed by the case id: one inquiry of a case is
 * open at a time) and "answer:parcel" (a stalled parcel's, keyed by the
 * inquiry id). */
AS_MUST_CHECK int logi_timers_answer(void *state, as_tx_t *tx, const char *inquiry_id,
                                     const char *kind, int64_t due_us);

/* ---- logi_returns.c */
AS_MUST_CHECK int logi_on_instructions(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int logi_on_return_shipped(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int logi_on_receipt(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int logi_on_linked(void *state, as_tx_t *tx, as_msg_t *m);
/* Deadline kind "return_transit", keyed by the case id. */
AS_MUST_CHECK int logi_timers_transit(void *state, as_tx_t *tx, const char *case_id,
                                      const char *kind, int64_t due_us);

/* ---- logi_followup.c */
/* Arms "followup:<n>" of case_id (logistics escalated it, or published its
 * outcome). Returns 0 or an as_db error. */
AS_MUST_CHECK int logi_followup_arm(logi_t *x, as_tx_t *tx, const char *case_id, long n);
/* Deadline kinds "followup:*". */
AS_MUST_CHECK int logi_timers_followup(void *state, as_tx_t *tx, const char *case_id,
                                       const char *kind, int64_t due_us);

/* ---- logi_out.c */
/* Publishes env (payload set) on topic keyed by key. */
AS_MUST_CHECK int logi_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic,
                               const char *key, const char *case_id, const char *order_id,
                               Aftersales__V1__Envelope *env);
/* SlaBreached on the cases topic. */
AS_MUST_CHECK int logi_breach(as_tx_t *tx, const as_msg_t *cause, const char *case_id,
                              const char *order_id, const char *clock, int64_t due_us,
                              const char *escalated_to);
/* TrackingNotice kind for the buyer (key case id, else order id). */
AS_MUST_CHECK int logi_notice(as_tx_t *tx, const as_msg_t *cause, const logi_ask_t *a,
                              const char *inquiry_id, int kind);
/* The inquiry id of i13_ids.md: uuid5("aftersales.carrier_inquiry",
 * "<kind>|<case_id or tracking_number>|<n>"). */
void logi_inquiry_id(char out[AS_UUID_STRLEN + 1], int kind, const char *subject, int n);
const char *logi_kind_name(int kind);
/* Free text from carriers and warehouses: bounded, no control bytes. */
bool logi_text_ok(const char *s, size_t max);
/* An optional id: empty, or safe as as_envelope_id_ok says. */
bool logi_opt_id_ok(const char *s);
/* Decimal text of v into buf[24]. */
const char *logi_i64(char buf[24], long long v);

#endif
