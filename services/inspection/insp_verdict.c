/* insp_verdict: a QC agent's verdict judged against the standard in force.
 *
 * The verdict names its task; the task must exist, belong to the verdict's
 * case and not be judged yet; the units judged must be units of the task
 * (received goods, or the claimed units of an evidence-only task); the
 * items must be the category's checklist, each exactly once. Anything else
 * is dead-lettered as contract_violation with the reason (unknown_task,
 * second_verdict, units_not_received, item_not_in_standard, ...). The
 * items alone decide: failed defect items confirm the defect and give its
 * code and severity, the grade follows, and the category maps the grade to
 * a disposition and resellable. A defect_confirmed flag or defect code
 * that contradicts the items is not trusted: the verdict is judged by its
 * items, and the contradiction is counted and logged (README "Verdicts").
 * The judgment is recorded on the task, InspectionCompleted is published
 * with every field, the SLA deadline is cancelled, and a confirmed defect
 * counts toward its supplier clusters (insp_cluster). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_buf.h"
#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "inspection.h"

typedef struct task {
  const char *case_id, *category;
  bool evidence_only, judged;
  insp_units_t units[INSP_MAX_LINES];
  size_t n;
  PGresult *owner;
} task_t;

static const char sql_task[] =
    "SELECT t.case_id, t.evidence_only, t.category, t.judged_at_us IS NOT NULL, l.line_id, l.sku,"
    " l.quantity FROM tasks t JOIN task_lines l USING (task_id) WHERE t.task_id = $1"
    " ORDER BY l.line_id FOR UPDATE OF t";

static int task_load(as_tx_t *tx, const char *task_id, task_t *t) {
  memset(t, 0, sizeof *t);
  const char *vals[1] = {task_id};
  int rc = as_db_query(as_tx_db(tx), sql_task, 1, vals, &t->owner);
  if (rc) return rc;
  PGresult *r = t->owner;
  if (PQntuples(r) == 0) return -ENOENT;
  t->case_id = PQgetvalue(r, 0, 0);
  t->evidence_only = PQgetvalue(r, 0, 1)[0] == 't';
  t->category = PQgetvalue(r, 0, 2);
  t->judged = PQgetvalue(r, 0, 3)[0] == 't';
  for (int i = 0; i < PQntuples(r) && i < INSP_MAX_LINES; i++)
    t->units[t->n++] =
        (insp_units_t){PQgetvalue(r, i, 4), PQgetvalue(r, i, 5), atoi(PQgetvalue(r, i, 6))};
  return 0;
}

static const char sql_judged[] =
    "UPDATE tasks SET judged_at_us = $2, auto_passed = $3, inspector_id = $4,"
    " defect_confirmed = $5, defect_code = $6, severity = $7, grade = $8, disposition = $9,"
    " resellable = $10, failed_items = $11::text[] WHERE task_id = $1";

static int record(as_tx_t *tx, const insp_done_t *d, int64_t at) {
  const insp_judgment_t *j = d->j;
  as_buf_t failed;
  as_buf_init(&failed);
  as_buf_arr_open(&failed);
  for (size_t i = 0; i < j->nfailed; i++) as_buf_arr_str(&failed, j->failed[i]);
  as_buf_arr_close(&failed);
  int rc = as_buf_ok(&failed) ? 0 : -ENOMEM;
  char at_s[24], sev[8], grade[8], disp[8];
  snprintf(at_s, sizeof at_s, "%lld", (long long)at);
  snprintf(sev, sizeof sev, "%d", j->severity);
  snprintf(grade, sizeof grade, "%d", j->grade);
  snprintf(disp, sizeof disp, "%d", j->disposition);
  const char *vals[11] = {d->task_id,
                          at_s,
                          d->inspector_id ? "f" : "t",
                          d->inspector_id,
                          j->defect_confirmed ? "t" : "f",
                          j->defect_code,
                          sev,
                          grade,
                          disp,
                          j->resellable ? "t" : "f",
                          as_buf_str(&failed)};
  if (rc == 0) rc = as_db_query(as_tx_db(tx), sql_judged, 11, vals, NULL);
  as_buf_free(&failed);
  return rc;
}

int insp_complete(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                  const insp_done_t *d) {
  int64_t at = as_now_us();
  int rc = record(tx, d, at);
  if (rc == 0)
    rc = as_deadline_cancel(tx, c->case_id, d->evidence_only ? "sla:evidence" : "sla:return");
  if (rc) return rc;
  const insp_judgment_t *j = d->j;
  Aftersales__V1__LineRef lr[INSP_MAX_LINES], *lp[INSP_MAX_LINES];
  for (size_t i = 0; i < d->n; i++) {
    aftersales__v1__line_ref__init(&lr[i]);
    lr[i].line_id = (char *)d->units[i].line_id;
    lr[i].sku = (char *)d->units[i].sku;
    lr[i].quantity = d->units[i].quantity;
    lp[i] = &lr[i];
  }
  const insp_line_t *first = insp_case_line(c, d->units[0].line_id);
  Aftersales__V1__InspectionCompleted ic = AFTERSALES__V1__INSPECTION_COMPLETED__INIT;
  ic.case_id = (char *)c->case_id;
  ic.task_id = (char *)d->task_id;
  ic.defect_confirmed = j->defect_confirmed;
  ic.defect_code = (char *)(j->defect_code ? j->defect_code : "");
  ic.severity = j->severity;
  ic.resellable = j->resellable;
  ic.standard = (char *)d->cat->name;
  ic.standard_version = (char *)insp_standards_version(x->standards);
  ic.sku = (char *)first->sku;
  ic.supplier_id = (char *)first->supplier_id;
  ic.lot_id = (char *)first->lot_id;
  ic.completed_at_us = at;
  ic.failed_items = (char **)j->failed;
  ic.n_failed_items = j->nfailed;
  ic.grade = j->grade;
  ic.disposition = j->disposition;
  ic.lines = lp;
  ic.n_lines = d->n;
  ic.inspector_id = (char *)(d->inspector_id ? d->inspector_id : "");
  ic.evidence_only = d->evidence_only;
  ic.auto_passed = d->inspector_id == NULL;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_INSPECTION_COMPLETED;
  env.inspection_completed = &ic;
  return insp_publish(tx, cause, AS_TOPIC_NAME_INSPECTION, c->case_id, c->case_id, c->order_id,
                      &env);
}

/* The checks before judging; NULL or the dead letter's reason. */
static const char *check(const Aftersales__V1__QcVerdict *v, const task_t *t, char *why,
                         size_t whylen) {
  if (strcmp(t->case_id, v->case_id) != 0) return "unknown_task: the task is another case's";
  if (t->judged) return "second_verdict: the task was judged already";
  if (!as_envelope_id_ok(v->inspector_id)) return "inspector id missing or unsafe";
  if (!insp_text_ok(v->notes, 4000)) return "notes too long or have control bytes";
  if (v->n_items > INSP_ITEMS_MAX) return "more item results than a checklist holds";
  return insp_units_check(v->lines, v->n_lines, t->units, t->n,
                          t->evidence_only ? "units_not_in_task" : "units_not_received", why,
                          whylen);
}

/* The units judged: the verdict's lines, or every unit of the task. */
static size_t judged_units(const Aftersales__V1__QcVerdict *v, const task_t *t, insp_units_t *out) {
  if (v->n_lines == 0) return memcpy(out, t->units, t->n * sizeof *out), t->n;
  for (size_t i = 0; i < v->n_lines; i++) {
    size_t k = 0;
    while (strcmp(t->units[k].line_id, v->lines[i]->line_id) != 0) k++;
    out[i] = (insp_units_t){t->units[k].line_id, t->units[k].sku, v->lines[i]->quantity};
  }
  return v->n_lines;
}

static void note_contradiction(insp_t *x, const Aftersales__V1__QcVerdict *v,
                               const insp_judgment_t *j) {
  bool flag = v->defect_confirmed != j->defect_confirmed;
  bool code = j->defect_confirmed && v->defect_code[0] && strcmp(v->defect_code, j->defect_code);
  if (!flag && !code) return;
  as_counter_add(x->contradictions, 1);
  AS_WARN(x->log, "verdict contradicts its items: judged by the items",
          AS_F_STR("case_id", v->case_id), AS_F_STR("task_id", v->task_id),
          AS_F_INT("flag_defect", v->defect_confirmed),
          AS_F_INT("items_defect", j->defect_confirmed));
}

static int judge(insp_t *x, as_tx_t *tx, as_msg_t *m, const task_t *t) {
  const Aftersales__V1__QcVerdict *v = m->env->qc_verdict;
  char why[240];
  const char *bad = check(v, t, why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  const insp_category_t *cat = insp_standards_category(x->standards, t->category);
  insp_result_t res[INSP_ITEMS_MAX];
  for (size_t i = 0; i < v->n_items; i++)
    res[i] = (insp_result_t){v->items[i]->item_code, v->items[i]->passed};
  insp_judgment_t j;
  bad = insp_judge(x->standards, cat, res, v->n_items, &j, why, sizeof why);
  if (bad) return as_tx_reject(m, bad), 0;
  note_contradiction(x, v, &j);
  insp_case_t c;
  int rc = insp_case_load(tx, t->case_id, &c);
  if (rc) return rc == -ENOENT ? -EIO : rc; /* a task's case is always projected */
  insp_units_t units[INSP_MAX_LINES];
  insp_done_t d = {.task_id = v->task_id,
                   .inspector_id = v->inspector_id,
                   .evidence_only = t->evidence_only,
                   .cat = cat,
                   .j = &j,
                   .units = units,
                   .n = judged_units(v, t, units)};
  rc = insp_complete(x, tx, m, &c, &d);
  as_counter_add(j.defect_confirmed ? x->verdicts_defect : x->verdicts_pass, rc == 0);
  for (size_t i = 0; rc == 0 && j.defect_confirmed && i < d.n; i++)
    rc = insp_cluster_defect(x, tx, m, &c, insp_case_line(&c, units[i].line_id), j.defect_code,
                             cat->name);
  if (rc == 0)
    as_histogram_observe(x->verdict_seconds, (double)(as_now_us() - m->env->occurred_at_us) / 1e6);
  insp_case_free(&c);
  return rc;
}

int insp_on_verdict(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__QcVerdict *v = m->env->qc_verdict;
  if (!as_uuid_valid(v->task_id) || !as_envelope_id_ok(v->case_id))
    return as_tx_reject(m, "unknown_task: task id not a UUID, or case id unsafe"), 0;
  char id[AS_UUID_STRLEN + 1];
  memcpy(id, v->task_id, sizeof id);
  as_uuid_canonicalise(id);
  task_t t;
  int rc = task_load(tx, id, &t);
  if (rc == -ENOENT)
    rc = 0, as_tx_reject(m, "unknown_task: no task with this id");
  else if (rc == 0)
    rc = judge(state, tx, m, &t);
  PQclear(t.owner);
  return rc;
}
