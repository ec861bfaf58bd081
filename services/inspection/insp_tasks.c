/* insp_tasks: the QC queue. A ReturnReceived opens the case's goods task
 * for the units the warehouse received (only units the case claimed); an
 * InspectionRequested from review opens its evidence-only task. Each task
 * is announced (InspectionTaskOpened) and gets its SLA deadline, unless
 * its category's rule passes it at once (a change-of-mind return received
 * sealed): then it is completed with auto_passed. A task still unjudged at
 * its deadline is escalated: SlaBreached (clock "inspection") to the QC
 * supervisors, the task marked, counted. Goods of a category judged on
 * evidence only (fresh produce) open no goods task. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_cols.h"
#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "inspection.h"

typedef struct opening {
  as_msg_t *m;
  const insp_case_t *c;
  bool evidence;
  const char *condition; /* goods only: what the warehouse saw */
  insp_units_t units[INSP_MAX_LINES];
  size_t n;
} opening_t;

enum { TL_TASK, TL_LINE, TL_SKU, TL_QTY };
static const as_col_t task_line_cols[] = {
    [TL_TASK] = {"task_id", "uuid"},
    [TL_LINE] = {"line_id", "text"},
    [TL_SKU] = {"sku", "text"},
    [TL_QTY] = {"quantity", "int"},
};
static const as_bulk_t sql_task_lines = AS_BULK(
    "INSERT INTO task_lines (task_id, line_id, sku, quantity) SELECT * FROM {{u}}", task_line_cols);

static const char sql_task[] =
    "INSERT INTO tasks (task_id, case_id, evidence_only, category, standard_version,"
    " opened_at_us, due_at_us) VALUES ($1, $2, $3, $4, $5, $6, $7)"
    " ON CONFLICT DO NOTHING RETURNING task_id";

/* Inserts the task row; *fresh false when the case has this task already. */
static int insert_task(as_tx_t *tx, const char *task_id, const opening_t *o,
                       const insp_category_t *cat, const char *version, int64_t at, int64_t due,
                       bool *fresh) {
  char at_s[24], due_s[24];
  snprintf(at_s, sizeof at_s, "%lld", (long long)at);
  snprintf(due_s, sizeof due_s, "%lld", (long long)due);
  const char *vals[7] = {task_id, o->c->case_id, o->evidence ? "t" : "f", cat->name, version,
                         at_s,    due_s};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_task, 7, vals, &r);
  *fresh = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc || !*fresh) return rc;
  as_cols_t l;
  as_cols_init(&l, &sql_task_lines);
  for (size_t i = 0; i < o->n; i++) {
    as_cols_str(&l, TL_TASK, task_id);
    as_cols_str(&l, TL_LINE, o->units[i].line_id);
    as_cols_str(&l, TL_SKU, o->units[i].sku);
    as_cols_int(&l, TL_QTY, o->units[i].quantity);
  }
  rc = as_cols_run(&l, as_tx_db(tx), NULL);
  as_cols_free(&l);
  return rc;
}

static int publish_opened(as_tx_t *tx, const opening_t *o, const char *task_id,
                          const insp_category_t *cat, const char *version, int64_t at,
                          int64_t due) {
  Aftersales__V1__LineRef lr[INSP_MAX_LINES], *lp[INSP_MAX_LINES];
  for (size_t i = 0; i < o->n; i++) {
    aftersales__v1__line_ref__init(&lr[i]);
    lr[i].line_id = (char *)o->units[i].line_id;
    lr[i].sku = (char *)o->units[i].sku;
    lr[i].quantity = o->units[i].quantity;
    lp[i] = &lr[i];
  }
  Aftersales__V1__InspectionTaskOpened t = AFTERSALES__V1__INSPECTION_TASK_OPENED__INIT;
  t.task_id = (char *)task_id;
  t.case_id = (char *)o->c->case_id;
  t.evidence_only = o->evidence;
  t.n_lines = o->n;
  t.lines = lp;
  t.category = (char *)cat->name;
  t.standard_id = (char *)cat->name;
  t.standard_version = (char *)version;
  t.due_at_us = due;
  t.opened_at_us = at;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_INSPECTION_TASK_OPENED;
  env.inspection_task_opened = &t;
  return insp_publish(tx, o->m, AS_TOPIC_NAME_INSPECTION, o->c->case_id, o->c->case_id,
                      o->c->order_id, &env);
}

/* Passed by the category's rule: grade A, its disposition, no human. */
static int auto_pass(insp_t *x, as_tx_t *tx, const opening_t *o, const char *task_id,
                     const insp_category_t *cat) {
  insp_judgment_t j = {.grade = AFTERSALES__V1__QC_GRADE__QC_GRADE_A};
  j.disposition = cat->grade[j.grade].disposition;
  j.resellable = cat->grade[j.grade].resellable;
  insp_done_t d = {.task_id = task_id, .cat = cat, .j = &j, .units = o->units, .n = o->n};
  as_counter_add(x->auto_passed, 1);
  return insp_complete(x, tx, o->m, o->c, &d);
}

static int open_task(insp_t *x, as_tx_t *tx, const opening_t *o) {
  const insp_line_t *first = insp_case_line(o->c, o->units[0].line_id);
  const insp_category_t *cat = insp_standards_category(x->standards, first->category);
  if (!o->evidence && !cat->inspectable) {
    as_counter_add(x->not_inspectable, 1);
    AS_INFO(x->log, "goods of a category judged on evidence only: no task",
            AS_F_STR("case_id", o->c->case_id), AS_F_STR("category", cat->name));
    return 0;
  }
  char task_id[AS_UUID_STRLEN + 1];
  as_uuid_inspection_task(task_id, o->c->case_id, o->evidence ? "evidence" : "return");
  const char *version = insp_standards_version(x->standards);
  int64_t at = as_now_us(), due = at + x->conf->sla_hours * INSP_HOUR_US;
  bool fresh;
  int rc = insert_task(tx, task_id, o, cat, version, at, due, &fresh);
  if (rc) return rc;
  if (!fresh)
    return as_tx_reject(o->m, o->evidence ? "task_exists: the case's evidence task is open already"
                                          : "task_exists: the case's return was received already"),
           0;
  as_counter_add(o->evidence ? x->tasks_evidence : x->tasks_return, 1);
  rc = publish_opened(tx, o, task_id, cat, version, at, due);
  if (rc) return rc;
  if (!o->evidence && insp_category_auto_pass(cat, o->c->reason, o->condition))
    return auto_pass(x, tx, o, task_id, cat);
  return as_deadline_set(tx, o->c->case_id, o->evidence ? "sla:evidence" : "sla:return", due);
}

/* The units a message names, checked against the case's claimed units;
 * NULL or the reason. No lines: every claimed unit (evidence only). */
static const char *take_units(opening_t *o, Aftersales__V1__LineRef *const *l, size_t n,
                              bool all_if_none, const char *what, char *why, size_t whylen) {
  insp_units_t claimed[INSP_MAX_LINES];
  for (size_t i = 0; i < o->c->n; i++)
    claimed[i] = (insp_units_t){o->c->lines[i].line_id, o->c->lines[i].sku, o->c->lines[i].claimed};
  if (n == 0 && !all_if_none) return as_err_set(why, whylen, "%s: no lines", what), why;
  const char *bad = insp_units_check(l, n, claimed, o->c->n, what, why, whylen);
  if (bad) return bad;
  if (n == 0) {
    memcpy(o->units, claimed, o->c->n * sizeof *claimed);
    o->n = o->c->n;
    return NULL;
  }
  for (size_t i = 0; i < n; i++) {
    const insp_line_t *cl = insp_case_line(o->c, l[i]->line_id);
    o->units[i] = (insp_units_t){cl->line_id, cl->sku, l[i]->quantity};
  }
  o->n = n;
  return NULL;
}

static int with_case(insp_t *x, as_tx_t *tx, as_msg_t *m, const char *case_id,
                     int (*fn)(insp_t *, as_tx_t *, as_msg_t *, const insp_case_t *)) {
  if (!as_envelope_id_ok(case_id)) return as_tx_reject(m, "case id missing or unsafe"), 0;
  insp_cases_t cs;
  int rc = insp_cases_load(tx, &case_id, 1, &cs);
  const insp_case_t *c = rc == 0 ? insp_cases_find(&cs, case_id) : NULL;
  if (rc == 0 && !c) as_tx_reject(m, "unknown_case: no CaseOpened with lines for this case");
  if (c) rc = fn(x, tx, m, c);
  insp_cases_free(&cs);
  return rc;
}

static int received(insp_t *x, as_tx_t *tx, as_msg_t *m, const insp_case_t *c) {
  const Aftersales__V1__ReturnReceived *e = m->env->return_received;
  opening_t o = {.m = m, .c = c, .condition = e->condition};
  char why[200];
  if (!insp_text_ok(e->condition, 64) || !insp_text_ok(e->warehouse_id, 64))
    return as_tx_reject(m,
                        "return received: condition or warehouse id too long or has control "
                        "bytes"),
           0;
  const char *bad =
      take_units(&o, e->lines, e->n_lines, false, "units_not_claimed", why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  return open_task(x, tx, &o);
}

static int requested(insp_t *x, as_tx_t *tx, as_msg_t *m, const insp_case_t *c) {
  const Aftersales__V1__InspectionRequested *e = m->env->inspection_requested;
  char want[AS_UUID_STRLEN + 1], why[200];
  as_uuid_inspection_task(want, c->case_id, "evidence");
  if (strcmp(e->task_id, want) != 0)
    return as_tx_reject(m,
                        "task_id_mismatch: not uuid5(aftersales.inspection_task, "
                        "\"<case_id>|evidence\")"),
           0;
  opening_t o = {.m = m, .c = c, .evidence = true};
  const char *bad =
      take_units(&o, e->lines, e->n_lines, true, "units_not_claimed", why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  return open_task(x, tx, &o);
}

int insp_received_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = with_case(state, tx, msgs[i], msgs[i]->env->return_received->case_id, received);
  return rc;
}

int insp_requested_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    rc = with_case(state, tx, msgs[i], msgs[i]->env->inspection_requested->case_id, requested);
  return rc;
}

static const char sql_escalate[] =
    "UPDATE tasks t SET escalated_at_us = $3 FROM cases c WHERE t.case_id = $1"
    " AND t.evidence_only = $2 AND t.judged_at_us IS NULL AND t.escalated_at_us IS NULL"
    " AND c.case_id = t.case_id RETURNING c.order_id, t.due_at_us";

int insp_timers_sla(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                    int64_t due_us) {
  insp_t *x = state;
  int64_t now = as_now_us();
  char now_s[24];
  snprintf(now_s, sizeof now_s, "%lld", (long long)now);
  const char *vals[3] = {case_id, strcmp(kind, "sla:evidence") == 0 ? "t" : "f", now_s};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_escalate, 3, vals, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc; /* judged meanwhile */
  Aftersales__V1__SlaBreached b = AFTERSALES__V1__SLA_BREACHED__INIT;
  b.case_id = (char *)case_id;
  b.clock = "inspection";
  b.due_at_us = due_us ? due_us : strtoll(PQgetvalue(r, 0, 1), NULL, 10);
  b.breached_at_us = now;
  b.escalated_to = "qc_supervisor";
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SLA_BREACHED;
  env.sla_breached = &b;
  rc = insp_publish(tx, NULL, AS_TOPIC_NAME_CASES, case_id, case_id, PQgetvalue(r, 0, 0), &env);
  PQclear(r);
  if (rc == 0) as_counter_add(x->sla_breaches, 1);
  if (rc == 0)
    AS_WARN(x->log, "inspection SLA breached: task escalated", AS_F_STR("case_id", case_id),
            AS_F_STR("kind", kind));
  return rc;
}
