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
 * counts toward its supplier clusters (insp_cluster). A batch's verdicts
 * are judged together: their tasks (locked, in task id order) and cases
 * are read with one statement each and the judgments and cancelled
 * deadlines written with one each, so a batch of 500 costs a handful of
 * round trips besides the clusters' own work. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_buf.h"
#include "as_cols.h"
#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "inspection.h"

typedef struct vtask {
  const char *task_id, *case_id, *category;
  bool evidence_only, judged;
  const insp_units_t *units;
  size_t n;
} vtask_t;

/* A confirmed defect on one judged line, for its cluster. */
typedef struct defect {
  const as_msg_t *m;
  const insp_case_t *c;
  const insp_line_t *l;
  const char *code, *category;
} defect_t;

/* One batch of verdicts: what was read, and what will be written. */
typedef struct vbatch {
  PGresult *owner;
  vtask_t *t;
  size_t nt;
  insp_units_t *units;
  insp_cases_t cases;
  as_cols_t upd;
  const char **dl_case, **dl_kind;
  size_t ndl;
  char (*ids)[AS_UUID_STRLEN + 1]; /* per message: its task id, canonical; "" when refused */
  defect_t *defects;               /* confirmed, for the clusters once the tasks are written */
  size_t ndef, capdef;
} vbatch_t;

/* ---- completing a task: the event, and the auto-pass's own write */

static int publish_completed(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                             const insp_done_t *d, int64_t at) {
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

static const char sql_auto[] =
    "UPDATE tasks SET judged_at_us = $2, auto_passed = true, defect_confirmed = false,"
    " severity = 0, grade = $3, disposition = $4, resellable = $5, failed_items = '{}'"
    " WHERE task_id = $1";

int insp_complete(insp_t *x, as_tx_t *tx, const as_msg_t *cause, const insp_case_t *c,
                  const insp_done_t *d) {
  int64_t at = as_now_us();
  char at_s[24], grade[8], disp[8];
  snprintf(at_s, sizeof at_s, "%lld", (long long)at);
  snprintf(grade, sizeof grade, "%d", d->j->grade);
  snprintf(disp, sizeof disp, "%d", d->j->disposition);
  const char *vals[5] = {d->task_id, at_s, grade, disp, d->j->resellable ? "t" : "f"};
  int rc = as_db_query(as_tx_db(tx), sql_auto, 5, vals, NULL);
  return rc ? rc : publish_completed(x, tx, cause, c, d, at);
}

/* ---- reading the batch's tasks and cases */

static const as_col_t task_cols[] = {{"task_id", "uuid"}};
static const as_bulk_t sql_tasks = AS_BULK(
    "SELECT t.task_id::text, t.case_id, t.evidence_only, t.category, t.judged_at_us IS NOT NULL,"
    " l.line_id, l.sku, l.quantity FROM tasks t JOIN task_lines l USING (task_id)"
    " WHERE t.task_id = ANY({{$task_id}}) ORDER BY t.task_id, l.line_id FOR UPDATE OF t",
    task_cols);

/* Rows come ordered by task: a task is a run of rows. */
static int tasks_of(vbatch_t *b) {
  PGresult *r = b->owner;
  int rows = PQntuples(r);
  b->t = calloc((size_t)rows + 1, sizeof *b->t);
  b->units = calloc((size_t)rows + 1, sizeof *b->units);
  if (!b->t || !b->units) return -ENOMEM;
  for (int i = 0; i < rows; i++) {
    b->units[i] =
        (insp_units_t){PQgetvalue(r, i, 5), PQgetvalue(r, i, 6), atoi(PQgetvalue(r, i, 7))};
    vtask_t *t = b->nt ? &b->t[b->nt - 1] : NULL;
    if (!t || strcmp(t->task_id, PQgetvalue(r, i, 0)) != 0) {
      t = &b->t[b->nt++];
      *t = (vtask_t){.task_id = PQgetvalue(r, i, 0),
                     .case_id = PQgetvalue(r, i, 1),
                     .evidence_only = PQgetvalue(r, i, 2)[0] == 't',
                     .category = PQgetvalue(r, i, 3),
                     .judged = PQgetvalue(r, i, 4)[0] == 't',
                     .units = &b->units[i]};
    }
    t->n++;
  }
  return 0;
}

static vtask_t *task_find(vbatch_t *b, const char *id) {
  for (size_t i = 0; i < b->nt; i++)
    if (strcmp(b->t[i].task_id, id) == 0) return &b->t[i];
  return NULL;
}

/* Canonical task ids of the verdicts that name one; the others refused. */
static int load(as_tx_t *tx, vbatch_t *b, as_msg_t *const *msgs, size_t n) {
  as_cols_t q;
  as_cols_init(&q, &sql_tasks);
  for (size_t i = 0; i < n; i++) {
    const Aftersales__V1__QcVerdict *v = msgs[i]->env->qc_verdict;
    if (!as_uuid_valid(v->task_id) || !as_envelope_id_ok(v->case_id)) {
      as_tx_reject(msgs[i], "unknown_task: task id not a UUID, or case id unsafe");
      continue;
    }
    memcpy(b->ids[i], v->task_id, AS_UUID_STRLEN + 1);
    as_uuid_canonicalise(b->ids[i]);
    as_cols_str(&q, 0, b->ids[i]);
  }
  int rc = as_cols_run(&q, as_tx_db(tx), &b->owner);
  as_cols_free(&q);
  if (rc || !b->owner) return rc;
  if ((rc = tasks_of(b)) != 0) return rc;
  const char **cids = calloc(b->nt + 1, sizeof *cids);
  if (!cids) return -ENOMEM;
  for (size_t i = 0; i < b->nt; i++) cids[i] = b->t[i].case_id;
  rc = insp_cases_load(tx, cids, b->nt, &b->cases);
  free(cids);
  return rc;
}

/* ---- writing the judgments */

enum { U_TASK, U_AT, U_INSP, U_DEFECT, U_CODE, U_SEV, U_GRADE, U_DISP, U_RESELL, U_FAILED };
static const as_col_t upd_cols[] = {
    [U_TASK] = {"task_id", "uuid"},      [U_AT] = {"at", "bigint"},
    [U_INSP] = {"inspector", "text"},    [U_DEFECT] = {"defect", "bool"},
    [U_CODE] = {"code", "text"},         [U_SEV] = {"severity", "int"},
    [U_GRADE] = {"grade", "int"},        [U_DISP] = {"disposition", "int"},
    [U_RESELL] = {"resellable", "bool"}, [U_FAILED] = {"failed", "text"},
};
static const as_bulk_t sql_judged = AS_BULK(
    "UPDATE tasks t SET judged_at_us = u.at, inspector_id = u.inspector, defect_confirmed = "
    "u.defect,"
    " defect_code = u.code, severity = u.severity, grade = u.grade, disposition = u.disposition,"
    " resellable = u.resellable, failed_items = u.failed::text[] FROM {{u}}"
    " WHERE t.task_id = u.task_id",
    upd_cols);

static int queue_judged(vbatch_t *b, const vtask_t *t, const char *inspector,
                        const insp_judgment_t *j, int64_t at) {
  as_buf_t failed;
  as_buf_init(&failed);
  as_buf_arr_open(&failed);
  for (size_t i = 0; i < j->nfailed; i++) as_buf_arr_str(&failed, j->failed[i]);
  as_buf_arr_close(&failed);
  int rc = as_buf_ok(&failed) ? 0 : -ENOMEM;
  as_cols_t *u = &b->upd;
  as_cols_str(u, U_TASK, t->task_id);
  as_cols_int(u, U_AT, at);
  as_cols_str(u, U_INSP, inspector);
  as_cols_bool(u, U_DEFECT, j->defect_confirmed);
  as_cols_str(u, U_CODE, j->defect_code);
  as_cols_int(u, U_SEV, j->severity);
  as_cols_int(u, U_GRADE, j->grade);
  as_cols_int(u, U_DISP, j->disposition);
  as_cols_bool(u, U_RESELL, j->resellable);
  as_cols_str(u, U_FAILED, as_buf_str(&failed));
  as_buf_free(&failed);
  b->dl_case[b->ndl] = t->case_id;
  b->dl_kind[b->ndl++] = t->evidence_only ? "sla:evidence" : "sla:return";
  return rc;
}

static int defect_add(vbatch_t *b, defect_t d) {
  if (b->ndef == b->capdef) {
    size_t cap = b->capdef ? 2 * b->capdef : 64;
    defect_t *p = realloc(b->defects, cap * sizeof *p);
    if (!p) return -ENOMEM;
    b->defects = p, b->capdef = cap;
  }
  b->defects[b->ndef++] = d;
  return 0;
}

/* ---- judging one verdict */

/* The checks before judging; NULL or the dead letter's reason. */
static const char *check(const Aftersales__V1__QcVerdict *v, const vtask_t *t, char *why,
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
static size_t judged_units(const Aftersales__V1__QcVerdict *v, const vtask_t *t,
                           insp_units_t *out) {
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

static int judge(insp_t *x, as_tx_t *tx, vbatch_t *b, as_msg_t *m, vtask_t *t) {
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
  const insp_case_t *c = insp_cases_find(&b->cases, t->case_id);
  if (!c) return -EIO; /* a task's case is always projected */
  insp_units_t units[INSP_MAX_LINES];
  insp_done_t d = {.task_id = t->task_id,
                   .inspector_id = v->inspector_id,
                   .evidence_only = t->evidence_only,
                   .cat = cat,
                   .j = &j,
                   .units = units,
                   .n = judged_units(v, t, units)};
  int64_t at = as_now_us();
  t->judged = true; /* a second verdict later in the batch is refused */
  int rc = queue_judged(b, t, v->inspector_id, &j, at);
  if (rc == 0) rc = publish_completed(x, tx, m, c, &d, at);
  if (rc == 0) as_counter_add(j.defect_confirmed ? x->verdicts_defect : x->verdicts_pass, 1);
  for (size_t i = 0; rc == 0 && j.defect_confirmed && i < d.n; i++)
    rc = defect_add(
        b, (defect_t){m, c, insp_case_line(c, units[i].line_id), j.defect_code, cat->name});
  if (rc == 0)
    as_histogram_observe(x->verdict_seconds, (double)(as_now_us() - m->env->occurred_at_us) / 1e6);
  return rc;
}

int insp_verdicts_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  vbatch_t b = {0};
  as_cols_init(&b.upd, &sql_judged);
  b.ids = calloc(n + 1, sizeof *b.ids);
  b.dl_case = calloc(n + 1, sizeof *b.dl_case);
  b.dl_kind = calloc(n + 1, sizeof *b.dl_kind);
  int rc = b.ids && b.dl_case && b.dl_kind ? load(tx, &b, msgs, n) : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (!b.ids[i][0]) continue;
    vtask_t *t = task_find(&b, b.ids[i]);
    if (!t)
      as_tx_reject(msgs[i], "unknown_task: no task with this id");
    else
      rc = judge(state, tx, &b, msgs[i], t);
  }
  if (rc == 0) rc = as_cols_run(&b.upd, as_tx_db(tx), NULL);
  if (rc == 0) rc = as_deadline_cancel_many(tx, b.dl_case, b.dl_kind, b.ndl);
  for (size_t i = 0; rc == 0 && i < b.ndef; i++) {
    const defect_t *d = &b.defects[i];
    rc = insp_cluster_defect(state, tx, d->m, d->c, d->l, d->code, d->category);
  }
  as_cols_free(&b.upd);
  insp_cases_free(&b.cases);
  PQclear(b.owner);
  free(b.t), free(b.units), free(b.ids), free(b.dl_case), free(b.dl_kind), free(b.defects);
  return rc;
}
