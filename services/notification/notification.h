/* notification: the service's private declarations, shared by its modules.
 *
 * main.c is its tables (configuration, metrics, payload routes, deadline
 * kinds); the modules: notif_state (the templates in force, loaded at start
 * and on SIGHUP), notif_templates (the template file and the pure
 * rendering; notif_default the built-in file), notif_contacts (the buyers'
 * contacts and erasure; a refused contact's dead letter with its personal
 * fields redacted), notif_cases (the case projection and the events that
 * only change it), notif_events (each buyer-visible event mapped to its
 * template and parameters), notif_tell (one notification rendered for the
 * buyer's channels and written as deliveries: quiet hours, frequency cap,
 * case order; in-app published at once), notif_timers (the ship-by
 * reminder and the survey; survey answers), notif_park (events read before
 * their case, parked until its CaseOpened, dropped after a bound). The sender (notif_send*,
 * notif_channel*) takes the deliveries from there.
 *
 * Ownership: notif_t is the runtime's state block; the templates are owned
 * by it (released by notif_fini) and replaced whole on reload. Everything a
 * handler allocates is released before it returns. */
#ifndef NOTIFICATION_H
#define NOTIFICATION_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "as_uuid.h"
#include "as_worker.h"
#include "notif_send.h"
#include "notif_templates.h"

#define NOTIF_TOPIC "aftersales.notifications.v1"
#define NOTIF_HOUR_US (3600LL * 1000000)
#define NOTIF_PARAMS_MAX 12
#define NOTIF_ADDR_MAX 500 /* bytes of a return address, packaging text, reason */

typedef struct notif_conf {
  const char *templates_file, *default_locale, *default_zone;
  long long reminder_hours, survey_delay_h, cap_per_hour;
  long long order_hold_ms, park_hours; /* README "Order and parking" */
  notif_send_conf_t send;              /* the sender's (notif_send.h) */
} notif_conf_t;

typedef struct notif_pending notif_pending_t; /* a notification queued (notif_tell.c) */

typedef struct notif {
  const as_log_t *log;
  const notif_conf_t *conf;
  notif_templates_t *templates; /* owned; swapped on SIGHUP */
  as_counter_t *contacts_stored, *contacts_stale, *contacts_refused, *erasures;
  as_counter_t *told, *deliveries, *duplicates, *in_app, *untold_case, *untold_channel;
  as_counter_t *deferred_quiet, *deferred_cap, *reminders_set, *reminders_skipped;
  as_counter_t *surveys_set, *answers[5], *reloads_ok, *reloads_refused;
  as_counter_t *out_of_order, *parked, *parked_told, *parked_dropped;
  as_metrics_t *metrics; /* the worker's, for the dead letters this service writes itself */
  notif_send_t *send;    /* owned: made by notif_init, freed by notif_fini */
  /* The batch's notifications, told together at its end (notif_tell_flush);
   * owned, emptied after each batch, freed by notif_fini. */
  notif_pending_t *pending;
  size_t npending, cappending;
  bool batching;    /* in notif_events_apply: notif_tell queues */
  bool zone_warned; /* the default zone's refusal logged once */
} notif_t;

/* One notification to tell: what the event says. Strings borrowed. */
typedef struct notif_tell {
  const char *template_id;
  const char *case_id;  /* "" for a request rejected before any case */
  const char *order_id; /* the envelope's, when there is no case */
  const char *buyer_id; /* "" : the case projection's */
  const char *locale;   /* the event's own, used when the contact has none */
  const char *source_event_id;
  const char *notification_id; /* NULL: uuid5 of source_event_id|template_id */
  int64_t source_at_us, submitted_at_us;
  int64_t date_us, due_us; /* {date} and {due}/{ship_by}, in the buyer's zone (0: none) */
  bool urgent;
  bool first;                  /* the case's first response: never held for order */
  const char *only;            /* NULL, or the one channel to use ("sms": the packaging SMS) */
  const char *const *channels; /* NULL: the buyer's; else these (NotificationRequested) */
  size_t nchannels;
  notif_param_t p[NOTIF_PARAMS_MAX]; /* locale-independent parameters */
  size_t np;
  notif_param_t en[4], zh[4]; /* parameters in words, by language */
  size_t nwords;
} notif_tell_t;

/* ---- notif_state.c: the runtime's init, fini and reload */
AS_MUST_CHECK int notif_init(as_worker_t *w, const void *conf, void *state);
void notif_fini(void *state);
AS_MUST_CHECK int notif_reload(void *state);
AS_MUST_CHECK int notif_start(as_worker_t *w, void *state);
void notif_stop(void *state);

/* ---- notif_contacts.c */
/* The route of BuyerContactUpdated and BuyerErased: each in batch order,
 * before the batch's events are told. */
AS_MUST_CHECK int notif_contacts_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

/* ---- notif_cases.c */
/* CaseOpened: the batch's cases projected with one statement. */
AS_MUST_CHECK int notif_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int notif_on_shipped(void *state, as_tx_t *tx, as_msg_t *m);

/* ---- notif_events.c: one handler per buyer-visible payload */
/* The route of every buyer-visible payload: each message's handler in
 * batch order queues its notifications, told together at the end. */
AS_MUST_CHECK int notif_events_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int notif_on_acknowledged(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_rejected(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_decided(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_instructions(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_goodwill(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_refund(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_exchange(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_coupon(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_inspected(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_compensation(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_outcome(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_tracking(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_state(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int notif_on_requested(void *state, as_tx_t *tx, as_msg_t *m);

/* ---- notif_tell.c */
/* A tell for event m (source id, times, case) with template id. */
void notif_tell_init(notif_tell_t *t, const as_msg_t *m, const char *template_id);
void notif_tell_param(notif_tell_t *t, const char *name, const char *value);
void notif_tell_words(notif_tell_t *t, const char *name, const char *en, const char *zh);
/* Tells t (copied): rendered for the buyer's channels and written as its
 * deliveries (one per channel; a repeat writes nothing), the in-app notice
 * of a new one published. In a batch (x->batching) it is queued for
 * notif_tell_flush; else told at once. cause may be NULL (a deadline).
 * Returns 0, -ENOMEM or an as_db error. */
AS_MUST_CHECK int notif_tell(notif_t *x, as_tx_t *tx, const as_msg_t *cause, const notif_tell_t *t);
/* Tells every queued notification with two statements and empties the
 * queue. Returns 0 or an as_db error. */
AS_MUST_CHECK int notif_tell_flush(notif_t *x, as_tx_t *tx);
void notif_tell_drop(notif_t *x); /* empties the queue */
void notif_tell_free(notif_t *x); /* and frees it */
/* A money amount as the buyer reads it into out (NULL money: ""). */
const char *notif_money(char *out, size_t len, const Aftersales__V1__Money *m);

/* ---- notif_timers.c */
/* Arms the ship-by reminder of case_id (ReturnInstructions). */
AS_MUST_CHECK int notif_reminder_arm(notif_t *x, as_tx_t *tx, const char *case_id, int64_t ship_by);
AS_MUST_CHECK int notif_survey_arm(notif_t *x, as_tx_t *tx, const char *case_id);
AS_MUST_CHECK int notif_timers_reminder(void *state, as_tx_t *tx, const char *case_id,
                                        const char *kind, int64_t due_us);
AS_MUST_CHECK int notif_timers_survey(void *state, as_tx_t *tx, const char *case_id,
                                      const char *kind, int64_t due_us);
AS_MUST_CHECK int notif_on_survey(void *state, as_tx_t *tx, as_msg_t *m);

/* ---- notif_park.c */
/* Parks the events of msgs[0..n) (distinct, with their bytes), whose case
 * is not projected yet, and moves each case's "parked" deadline. Returns 0,
 * -ENOMEM or an as_db error. */
AS_MUST_CHECK int notif_park(notif_t *x, as_tx_t *tx, const as_msg_t *const *msgs, size_t n);
/* Takes the transaction-scoped lock of each of the n cases (repeats
 * allowed), in one order: the parking of a case's events and its
 * projection take them, so that whichever commits second sees the
 * other's rows (two instances racing). Returns 0 or an as_db error
 * (a deadlock with another lock is -EAGAIN: the batch is retried). */
#define NOTIF_CASE_LOCK_CLASS "hashtext('notification.case')"
AS_MUST_CHECK int notif_case_locks(as_tx_t *tx, const char *const *cases, size_t n);
/* Tells the parked events of the cases just projected: r is the result of
 * the projection (case_id, envelope as bytea, in event order). Returns 0,
 * -ENOMEM or an as_db error. */
AS_MUST_CHECK int notif_unpark(notif_t *x, as_tx_t *tx, PGresult *r);
/* The "parked" deadline of case_id: its CaseOpened never came; its parked
 * events are dropped, counted and logged (told, if the case is projected
 * by then: notif_park.c). */
AS_MUST_CHECK int notif_park_expired(void *state, as_tx_t *tx, const char *case_id,
                                     const char *kind, int64_t due_us);

/* Free text from people or upstream: bounded, no control bytes but newline. */
bool notif_text_ok(const char *s, size_t max);

#endif
