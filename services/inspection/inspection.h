/* inspection: the service's private declarations, shared by its modules.
 *
 * main.c is its tables (configuration, metrics, payload routes, deadline
 * kinds); the modules: insp_state (the standards in force, loaded at start
 * and on SIGHUP), insp_standards (the standards file and the pure
 * judgment), insp_cases (the projection of CaseOpened, read back by the
 * others), insp_tasks (ReturnReceived and InspectionRequested open tasks;
 * auto-pass; the SLA deadline), insp_verdict (QcVerdict judged, published
 * as InspectionCompleted), insp_cluster (confirmed defects counted per
 * supplier, SKU, lot and defect code; alerts, compensation, closing) and
 * insp_out (what they share: envelopes on a topic, ids, line checks).
 *
 * Ownership: insp_t is the runtime's state block; the standards are owned
 * by it (released by insp_fini) and replaced whole on reload. Everything a
 * batch allocates is released before the handler returns. */
#ifndef INSPECTION_H
#define INSPECTION_H

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "as_uuid.h"
#include "as_worker.h"
#include "insp_standards.h"

#define INSP_MAX_LINES 100 /* lines a case, a receipt or a verdict may carry */
#define INSP_HOUR_US (3600LL * 1000000)
#define INSP_DAY_US (24 * INSP_HOUR_US)

typedef struct insp_conf {
  const char *standards_file;
  long long sla_hours, window_days, cluster_min;
} insp_conf_t;

typedef struct insp {
  const as_log_t *log;
  const insp_conf_t *conf;
  insp_standards_t *standards; /* owned; swapped on SIGHUP */
  as_counter_t *tasks_return, *tasks_evidence, *auto_passed, *not_inspectable;
  as_counter_t *verdicts_pass, *verdicts_defect, *contradictions, *sla_breaches;
  as_counter_t *alerts_raised, *alerts_rectified, *alerts_expired, *grants, *watched;
  as_counter_t *reloads_ok, *reloads_refused;
  as_histogram_t *verdict_seconds;
} insp_t;

/* A case as the projection holds it; strings point into owner. */
typedef struct insp_line {
  const char *line_id, *sku, *category, *supplier_id, *lot_id;
  int32_t purchased, claimed;
  int64_t paid_minor;
} insp_line_t;

typedef struct insp_case {
  const char *case_id, *order_id, *buyer_id, *currency;
  int case_type, reason;
  bool has_evidence;
  const insp_line_t *lines; /* into the insp_cases_t that loaded it */
  size_t n;
} insp_case_t;

/* Cases read back together; owns the rows and arrays (insp_cases_free). */
typedef struct insp_cases {
  insp_case_t *v;
  size_t n;
  insp_line_t *lines;
  PGresult *owner;
} insp_cases_t;

/* A line and units of a task or a verdict (strings borrowed). */
typedef struct insp_units {
  const char *line_id, *sku;
  int32_t quantity;
} insp_units_t;

/* ---- insp_state.c: the runtime's init, fini and reload */
AS_MUST_CHECK int insp_init(as_worker_t *w, const void *conf, void *state);
void insp_fini(void *state);
AS_MUST_CHECK int insp_reload(void *state);

/* ---- insp_cases.c */
/* The route of CaseOpened: the batch's cases projected with two bulk
 * statements; a hostile one is dead-lettered. */
AS_MUST_CHECK int insp_cases_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
/* Reads the cases ids[0..n) back with one statement (the ones not
 * projected are missing from out). Returns 0 or an as_db error; out is
 * to be freed with insp_cases_free either way. */
AS_MUST_CHECK int insp_cases_load(as_tx_t *tx, const char *const *ids, size_t n, insp_cases_t *out);
/* The case of out with case_id, or NULL. */
const insp_case_t *insp_cases_find(const insp_cases_t *out, const char *case_id);
void insp_cases_free(insp_cases_t *out);
const insp_line_t *insp_case_line(const insp_case_t *c, const char *line_id);

/* ---- insp_tasks.c */
/* The routes of ReturnReceived and InspectionRequested: batch routes
 * (each message in turn), so that a batch's tasks are open before its
 * verdicts are judged. */
AS_MUST_CHECK int insp_received_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
AS_MUST_CHECK int insp_requested_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
/* Deadline kinds "sla:return" and "sla:evidence": the task is escalated. */
AS_MUST_CHECK int insp_timers_sla(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                                  int64_t due_us);

/* ---- insp_verdict.c */
/* The route of QcVerdict: the batch's verdicts judged together (their
 * tasks and cases read with two statements, the judgments written with
 * two), in batch order. */
AS_MUST_CHECK int insp_verdicts_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
/* What one judged task publishes (InspectionCompleted). */
typedef struct insp_done {
  const char *task_id, *inspector_id; /* inspector NULL: auto-passed */
  bool evidence_only;
  const insp_category_t *cat;
  const insp_judgment_t *j;
  const insp_units_t *units; /* the units judged */
  size_t n;
} insp_done_t;
/* Records an auto-pass on its task row at once and publishes
 * InspectionCompleted for case c. Returns 0 or an as_db error. */
AS_MUST_CHECK int insp_complete(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                                const insp_done_t *d);

/* ---- insp_cluster.c */
/* A confirmed defect of case c on its line l with code, judged now:
 * counted toward the cluster of (supplier, sku, lot, code), which may raise
 * the alert or compensate the case under the open one. */
AS_MUST_CHECK int insp_cluster_defect(insp_t *x, as_tx_t *tx, const as_msg_t *cause,
                                      const insp_case_t *c, const insp_line_t *l, const char *code,
                                      const char *category);
AS_MUST_CHECK int insp_on_rectified(void *state, as_tx_t *tx, as_msg_t *m);
/* Deadline kind "cluster:window" (keyed by the alert id). */
AS_MUST_CHECK int insp_timers_window(void *state, as_tx_t *tx, const char *alert_id,
                                     const char *kind, int64_t due_us);

/* ---- insp_out.c */
/* Publishes env (payload set) on topic keyed by key. */
AS_MUST_CHECK int insp_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic,
                               const char *key, const char *case_id, const char *order_id,
                               Aftersales__V1__Envelope *env);
/* The task id of case_id for kind "return" or "evidence" (i12_ids). */
/* Checks lines l[0..n) against the allowed units a[0..na): every line once,
 * 1..allowed units. Returns NULL or the reason (in why). */
const char *insp_units_check(Aftersales__V1__LineRef *const *l, size_t n, const insp_units_t *a,
                             size_t na, const char *what, char *why, size_t whylen);
/* Free text from people: bounded, no control bytes but newline and tab. */
bool insp_text_ok(const char *s, size_t max);

#endif
