/* review_inspection: review's side of quality inspection (issue 12).
 *
 * A claim the policy sends to QC (rule qc.evidence) is published as an
 * evidence-only InspectionRequested whose task id the inspection worker
 * recomputes, and waits in INSPECTING. An InspectionCompleted settles the
 * case: only the units inspection counted (its lines: received and judged)
 * are refunded, capped by the ledger, and the move names the inspector; a
 * failed inspection rejects. The inspection worker owns the inspection's
 * clock, so nothing here arms one. A CompensationGranted (a supplier
 * alert's reporter) refunds what is left of the affected lines, once per
 * compensation id, in any state, with a coupon and a timeline row that
 * moves nothing (a closed case is not reopened).
 *
 * Events that contradict the case (units or lines it never claimed, a task
 * or compensation id that is not its, a negative amount or another
 * currency) are dead-lettered with the reason before anything is written.
 *
 * Ownership: everything allocated is freed before a function returns. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "as_uuid.h"
#include "review.h"

#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define O(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x
#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x

static const as_case_actor_t review_actor = {"system", "review"};

enum { MAX_FAILED_ITEMS = 64, MAX_CODE = 64 };

/* ---- the request: a QC look at the evidence */

/* The attachments of the event that sent the case to QC: the opening
 * request's, or the evidence that completed it. */
static void cause_evidence(const as_msg_t *m, Aftersales__V1__Attachment ***ev, size_t *n) {
  *ev = NULL, *n = 0;
  if (!m || !m->env) return;
  if (m->env->payload_case == P(CASE_OPENED))
    *ev = m->env->case_opened->evidence, *n = m->env->case_opened->n_evidence;
  else if (m->env->payload_case == P(EVIDENCE_ADDED))
    *ev = m->env->evidence_added->evidence, *n = m->env->evidence_added->n_evidence;
}

int review_inspection_request(review_t *x, as_tx_t *tx, const review_item_t *it) {
  const review_rec_t *rec = it->rec;
  size_t n = rec->c.nlines;
  if (n == 0)
    return 0; /* a record without lines (an agent decides it) has nothing for QC to judge */
  Aftersales__V1__LineRef *refs = calloc(n, sizeof *refs);
  Aftersales__V1__LineRef **rp = calloc(n, sizeof *rp);
  if (!refs || !rp) {
    free(refs), free(rp);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    aftersales__v1__line_ref__init(&refs[i]);
    refs[i].line_id = (char *)rec->c.lines[i].line_id;
    refs[i].sku = (char *)rec->c.lines[i].sku;
    refs[i].quantity = rec->c.lines[i].quantity;
    rp[i] = &refs[i];
  }
  const review_line_t *first = &rec->c.lines[0];
  char task[AS_UUID_STRLEN + 1];
  as_uuid_inspection_task(task, rec->case_id, "evidence");
  Aftersales__V1__InspectionRequested ir = AFTERSALES__V1__INSPECTION_REQUESTED__INIT;
  ir.case_id = (char *)rec->case_id;
  ir.task_id = task;
  ir.order_id = (char *)rec->order_id;
  ir.buyer_id = (char *)rec->buyer_id;
  ir.sku = (char *)first->sku;
  ir.category = (char *)first->category;
  ir.supplier_id = (char *)(first->supplier_id ? first->supplier_id : "");
  ir.lot_id = (char *)(first->lot_id ? first->lot_id : "");
  ir.reason = rec->c.reason;
  ir.n_lines = n;
  ir.lines = rp;
  ir.requested_at_us = it->decided_at_us;
  cause_evidence(it->cause, &ir.evidence, &ir.n_evidence);
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = P(INSPECTION_REQUESTED);
  env.inspection_requested = &ir;
  int rc =
      review_publish(tx, it->cause, AS_TOPIC_NAME_INSPECTION, rec->case_id, rec->order_id, &env);
  if (rc == 0) as_counter_add(x->inspections_requested, 1);
  free(refs), free(rp);
  return rc;
}

/* ---- lines an event names, checked against the case */

static const review_line_t *case_line(const review_rec_t *rec, const char *line_id) {
  for (size_t i = 0; i < rec->c.nlines; i++)
    if (strcmp(rec->c.lines[i].line_id, line_id) == 0) return &rec->c.lines[i];
  return NULL;
}

const char *review_check_refs(const review_rec_t *rec, Aftersales__V1__LineRef *const *refs,
                              size_t n, int32_t min_units, bool claimed) {
  for (size_t i = 0; i < n; i++) {
    const review_line_t *l = case_line(rec, refs[i]->line_id);
    if (!l) return "line not on the case";
    for (size_t j = 0; j < i; j++)
      if (strcmp(refs[j]->line_id, refs[i]->line_id) == 0) return "line listed twice";
    int32_t max = claimed ? l->quantity : l->purchased;
    if (refs[i]->quantity < min_units || refs[i]->quantity > max)
      return claimed ? "units negative, zero or more than claimed"
                     : "units negative or more than bought";
  }
  return NULL;
}

/* A copy of rec whose lines are the ones refs name (the case's lines with
 * the refs' units when units, else the case's); *lines is owned by the
 * caller (free). */
static int rec_for_refs(const review_rec_t *rec, Aftersales__V1__LineRef *const *refs, size_t n,
                        bool units, review_rec_t *out, review_line_t **lines) {
  *out = *rec;
  *lines = calloc(n ? n : 1, sizeof **lines);
  if (!*lines) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    const review_line_t *l = case_line(rec, refs[i]->line_id);
    if (!l) continue; /* checked before */
    (*lines)[k] = *l;
    if (units) (*lines)[k].quantity = refs[i]->quantity;
    k++;
  }
  out->lines = *lines;
  out->c.lines = *lines;
  out->c.nlines = k;
  out->owner = NULL;
  return 0;
}

/* ---- the finding */

/* A code of the standard (item, defect, standard id and version): empty
 * or an id (letters, digits, . _ : -) of at most MAX_CODE bytes, so the
 * timeline detail needs no escaping and has a known size. */
static bool code_ok(const char *s) {
  return s[0] == '\0' || (strlen(s) <= MAX_CODE && as_envelope_id_ok(s));
}

static const char *inspection_check(const Aftersales__V1__InspectionCompleted *ic,
                                    const review_rec_t *rec, bool passed, char *why, size_t cap) {
  if (!ic->auto_passed && !as_envelope_id_ok(ic->inspector_id))
    return "inspection: inspector id missing or unsafe";
  if (ic->task_id[0] != '\0') {
    char ret[AS_UUID_STRLEN + 1], ev[AS_UUID_STRLEN + 1];
    as_uuid_inspection_task(ret, rec->case_id, "return");
    as_uuid_inspection_task(ev, rec->case_id, "evidence");
    if (strcmp(ic->task_id, ret) != 0 && strcmp(ic->task_id, ev) != 0)
      return "inspection: task id is not this case's";
  }
  if (ic->severity < 0 || ic->severity > 5) return "inspection: severity outside 0..5";
  if (ic->n_failed_items > MAX_FAILED_ITEMS) return "inspection: more than 64 failed items";
  for (size_t i = 0; i < ic->n_failed_items; i++)
    if (!ic->failed_items[i][0] || !code_ok(ic->failed_items[i]))
      return "inspection: failed item code empty, too long or unsafe";
  if (!code_ok(ic->standard) || !code_ok(ic->standard_version) || !code_ok(ic->defect_code))
    return "inspection: standard or defect code too long or unsafe";
  const char *bad = review_check_refs(rec, ic->lines, ic->n_lines, 1, true);
  if (bad) return snprintf(why, cap, "inspection: %s", bad), why;
  if (passed && ic->n_lines == 0) return "inspection: passed but counted no units";
  return NULL;
}

/* Appends the formatted text to buf[*at..cap) only if it fits with room
 * left for the closing bytes (keep), so the JSON stays whole. */
static bool append(char *buf, size_t cap, size_t *at, size_t keep, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static bool append(char *buf, size_t cap, size_t *at, size_t keep, const char *fmt, ...) {
  char tmp[512];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp || *at + (size_t)n + keep >= cap) return false;
  memcpy(buf + *at, tmp, (size_t)n + 1);
  *at += (size_t)n;
  return true;
}

/* The timeline detail of the finding: the task, the standard, the failed
 * items and the units counted. The task id is the case's or empty, the
 * codes are ids (inspection_check) and the line ids the case's, so
 * nothing needs escaping; counted lines that
 * do not fit are left out (counted_complete false), the JSON stays whole. */
static void finding_detail(char *buf, size_t cap, const Aftersales__V1__InspectionCompleted *ic) {
  size_t at = 0;
  (void)append(buf, cap, &at, 0,
               "{\"task_id\":\"%s\",\"standard\":\"%s\",\"standard_version\":\"%s\","
               "\"defect_code\":\"%s\",\"severity\":%d,\"grade\":%d,\"evidence_only\":%s,"
               "\"auto_passed\":%s,\"failed_items\":[",
               ic->task_id, ic->standard, ic->standard_version, ic->defect_code, ic->severity,
               ic->grade, ic->evidence_only ? "true" : "false", ic->auto_passed ? "true" : "false");
  for (size_t i = 0; i < ic->n_failed_items; i++) /* 64 ids of 64 bytes fit */
    (void)append(buf, cap, &at, 64, "%s\"%s\"", i ? "," : "", ic->failed_items[i]);
  (void)append(buf, cap, &at, 0, "],\"counted\":{");
  bool all = true;
  for (size_t i = 0; i < ic->n_lines && all; i++)
    all = append(buf, cap, &at, 40, "%s\"%s\":%d", i ? "," : "", ic->lines[i]->line_id,
                 ic->lines[i]->quantity);
  (void)append(buf, cap, &at, 0, "},\"counted_complete\":%s}", all ? "true" : "false");
}

/* The counted units, the inspector and the detail, kept until the case
 * settles (the finding may come before the goods are booked in). */
static int record_finding(as_tx_t *tx, const review_rec_t *rec,
                          const Aftersales__V1__InspectionCompleted *ic, bool passed,
                          const char *detail) {
  const char *who = ic->auto_passed ? "" : ic->inspector_id;
  const char *v[4] = {rec->case_id, passed ? "t" : "f", who, detail};
  int rc = as_db_query(as_tx_db(tx),
                       "UPDATE cases SET inspection_passed = $2, inspector_id = $3,"
                       " inspection_detail = $4::jsonb, updated_at = now() WHERE case_id = $1",
                       4, v, NULL);
  if (rc == 0)
    rc = as_db_query(as_tx_db(tx), "DELETE FROM inspected_lines WHERE case_id = $1", 1, v, NULL);
  for (size_t i = 0; rc == 0 && i < ic->n_lines; i++) {
    char q[16];
    snprintf(q, sizeof q, "%d", ic->lines[i]->quantity);
    const char *l[3] = {rec->case_id, ic->lines[i]->line_id, q};
    rc = as_db_query(as_tx_db(tx),
                     "INSERT INTO inspected_lines (case_id, line_id, quantity) VALUES ($1, $2, $3)",
                     3, l, NULL);
  }
  return rc;
}

/* What record_finding kept: the inspector (empty: passed without a human),
 * the detail, and the counted lines as LineRefs. */
typedef struct finding {
  PGresult *head, *lines;
  Aftersales__V1__LineRef *refs, **rp;
  size_t n;
} finding_t;

static void finding_free(finding_t *f) {
  PQclear(f->head), PQclear(f->lines);
  free(f->refs), free(f->rp);
}

/* f starts zeroed; finding_free releases it whatever happened. */
static int finding_load(as_tx_t *tx, const review_rec_t *rec, finding_t *f) {
  const char *v[1] = {rec->case_id};
  int rc = as_db_query(as_tx_db(tx),
                       "SELECT coalesce(inspector_id, ''), inspection_detail::text FROM cases"
                       " WHERE case_id = $1",
                       1, v, &f->head);
  if (rc == 0)
    rc = as_db_query(as_tx_db(tx),
                     "SELECT line_id, quantity FROM inspected_lines WHERE case_id = $1"
                     " ORDER BY line_id",
                     1, v, &f->lines);
  if (rc < 0) return rc;
  if (PQntuples(f->head) != 1) return -EIO;
  f->n = (size_t)PQntuples(f->lines);
  f->refs = calloc(f->n + 1, sizeof *f->refs);
  f->rp = calloc(f->n + 1, sizeof *f->rp);
  if (!f->refs || !f->rp) return -ENOMEM;
  for (size_t i = 0; i < f->n; i++) {
    aftersales__v1__line_ref__init(&f->refs[i]);
    f->refs[i].line_id = PQgetvalue(f->lines, (int)i, 0);
    f->refs[i].quantity = (int32_t)strtol(PQgetvalue(f->lines, (int)i, 1), NULL, 10);
    f->rp[i] = &f->refs[i];
  }
  return 0;
}

static int settle_move(as_tx_t *tx, const as_msg_t *m, const review_rec_t *rec, as_case_state_t to,
                       as_case_actor_t who, const char *why, const char *detail) {
  int mrc;
  return review_move(tx, rec->case_id, to, REVIEW_STATE_BIT(INSPECTING), who, why, m, detail, &mrc);
}

/* Pays or refuses what inspection counted. */
static int settle_counted(review_t *x, as_tx_t *tx, const as_msg_t *m, review_rec_t *rec,
                          const review_rec_t *counted, as_case_actor_t who, const char *detail) {
  if (!rec->inspection_passed) {
    int rc = settle_move(tx, m, rec, ST(REJECTED), who, "inspection.failed", detail);
    return rc ? rc
              : review_publish_outcome(x, tx, m, rec, V(REJECTED), "inspection.failed",
                                       ST(REJECTED), who);
  }
  if (rec->outcome == O(EXCHANGE)) {
    bool done;
    int rc = review_money_exchange(x, tx, m, counted, &done);
    return rc ? rc : settle_move(tx, m, rec, ST(EXCHANGED), who, "inspection.passed", detail);
  }
  /* the approval below the claim (an agent's) stays the most it pays */
  const char *code = rec->return_required ? "return.inspected" : "inspection.evidence";
  int64_t paid;
  int rc = rec->approved_minor < rec->c.claimed_minor
               ? review_money_refund(x, tx, m, counted, REVIEW_PAY_PARTIAL, rec->approved_minor,
                                     false, code, &paid)
               : review_money_refund(x, tx, m, counted, REVIEW_PAY_ITEMS, rec->approved_minor,
                                     rec->refund_shipping, code, &paid);
  if (rc < 0) return rc;
  rc = settle_move(tx, m, rec, paid > 0 ? ST(REFUNDED) : ST(REJECTED), who,
                   paid > 0 ? "inspection.passed" : "refund.nothing_left", detail);
  if (rc == 0 && paid == 0)
    rc = review_publish_outcome(x, tx, m, rec, V(REJECTED), "refund.nothing_left", ST(REJECTED),
                                who);
  return rc;
}

int review_inspection_settle(review_t *x, as_tx_t *tx, const as_msg_t *m, review_rec_t *rec) {
  /* review's own inspection follow-up is retired: rows armed before stop */
  finding_t f;
  memset(&f, 0, sizeof f);
  int rc = review_timers_cancel(tx, rec->case_id, "inspection");
  if (rc == 0) rc = finding_load(tx, rec, &f);
  review_rec_t counted;
  review_line_t *lines = NULL;
  if (rc == 0) rc = rec_for_refs(rec, f.rp, f.n, true, &counted, &lines);
  /* never more than came back: the receipt's count (logistics) caps it */
  if (rc == 0) rc = review_logistics_cap(tx, rec, &counted);
  if (rc == 0) {
    const char *inspector = PQgetvalue(f.head, 0, 0);
    as_case_actor_t who = inspector[0] ? (as_case_actor_t){"agent", inspector}
                                       : (as_case_actor_t){"system", "inspection"};
    const char *detail = PQgetisnull(f.head, 0, 1) ? NULL : PQgetvalue(f.head, 0, 1);
    rc = settle_counted(x, tx, m, rec, &counted, who, detail);
  }
  free(lines);
  finding_free(&f);
  return rc;
}

static int on_inspected(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__InspectionCompleted *ic = m->env->inspection_completed;
  bool fault = review_policy_seller_fault(x->policy, rec->c.reason);
  bool passed = fault ? ic->defect_confirmed : ic->resellable;
  char why[96];
  const char *bad = inspection_check(ic, rec, passed, why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  /* late or repeated: the case has settled */
  if (rec->state != ST(AWAITING_RETURN) && rec->state != ST(INSPECTING)) return 0;
  char detail[8192];
  finding_detail(detail, sizeof detail, ic);
  rec->inspection_known = true;
  rec->inspection_passed = passed;
  int rc = record_finding(tx, rec, ic, passed, detail);
  if (rc == 0 && rec->state == ST(INSPECTING)) rc = review_inspection_settle(x, tx, m, rec);
  return rc;
}

/* ---- compensation of a supplier alert's reporter */

static bool money_ok(const Aftersales__V1__Money *a, const char *currency) {
  return !a ||
         (a->amount_minor >= 0 && (a->amount_minor == 0 || strcmp(a->currency, currency) == 0));
}

/* NULL if the grant fits the case, else why not (static, or in why). */
static const char *compensation_check(const Aftersales__V1__CompensationGranted *g,
                                      const review_rec_t *rec, char *why, size_t cap) {
  if (!as_envelope_id_ok(g->alert_id)) return "compensation: alert id missing or unsafe";
  char name[512], want[AS_UUID_STRLEN + 1];
  int len = snprintf(name, sizeof name, "%s|%s", g->alert_id, rec->case_id);
  if (len < 0 || (size_t)len >= sizeof name) return "compensation: alert id too long";
  as_uuid_v5(want, "aftersales.compensation", name, (size_t)len);
  if (strcmp(g->compensation_id, want) != 0)
    return "compensation: compensation id is not the alert's and the case's";
  if ((g->buyer_id[0] && strcmp(g->buyer_id, rec->buyer_id) != 0) ||
      (g->order_id[0] && strcmp(g->order_id, rec->order_id) != 0))
    return "compensation: not the case's buyer or order";
  if (!money_ok(g->amount, rec->c.currency))
    return "compensation: amount negative or in another currency";
  if (!money_ok(g->coupon, rec->c.currency))
    return "compensation: coupon negative or in another currency";
  if (g->n_lines == 0) return "compensation: no lines";
  const char *bad = review_check_refs(rec, g->lines, g->n_lines, 0, false);
  if (bad) return snprintf(why, cap, "compensation: %s", bad), why;
  return NULL;
}

static int on_compensation(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec) {
  const Aftersales__V1__CompensationGranted *g = m->env->compensation_granted;
  char why[96];
  const char *bad = compensation_check(g, rec, why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  /* the row insert decides which delivery is the one */
  const char *v[3] = {g->compensation_id, rec->case_id, g->alert_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "INSERT INTO compensations (compensation_id, case_id, alert_id)"
                       " VALUES ($1, $2, $3) ON CONFLICT DO NOTHING RETURNING 1",
                       3, v, &r);
  bool first = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc < 0) return rc;
  if (!first) return as_counter_add(x->compensations_repeated, 1), 0;
  review_rec_t affected;
  review_line_t *lines = NULL;
  rc = rec_for_refs(rec, g->lines, g->n_lines, false, &affected, &lines);
  review_pay_t p = {.cause = m,
                    .rec = &affected,
                    .kind = REVIEW_PAY_REMAINDER,
                    .reason_code = "compensation.granted",
                    .compensation_id = g->compensation_id};
  if (rc == 0) rc = review_money_refund_many(x, tx, &p, 1);
  int64_t coupon = g->coupon ? g->coupon->amount_minor : 0;
  bool done = false;
  if (rc == 0) rc = review_money_coupon_for(x, tx, m, rec, coupon, g->compensation_id, &done);
  char detail[512], alert[160];
  as_log_json_escape(alert, sizeof alert, g->alert_id);
  snprintf(detail, sizeof detail,
           "{\"compensation_id\":\"%s\",\"alert_id\":%s,\"refunded_minor\":%lld,"
           "\"coupon_minor\":%lld,\"currency\":\"%s\"}",
           g->compensation_id, alert, (long long)p.paid, (long long)(done ? coupon : 0),
           rec->c.currency);
  /* the case stays where it is: a closed case is compensated, not reopened */
  if (rc == 0)
    rc = as_case_note(tx, rec->case_id, review_actor, "compensation.granted", m, detail, NULL);
  if (rc == 0) as_counter_add(x->compensations, 1);
  free(lines);
  return rc;
}

/* ---- the routes */

int review_on_inspected(void *state, as_tx_t *tx, as_msg_t *m) {
  return review_with_case(state, tx, m, m->env->inspection_completed->case_id, false, on_inspected);
}

int review_on_compensation(void *state, as_tx_t *tx, as_msg_t *m) {
  return review_with_case(state, tx, m, m->env->compensation_granted->case_id, true,
                          on_compensation);
}
