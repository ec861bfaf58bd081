/* as-review: where the money is decided.
 *
 * Consumes case events (CaseOpened, evidence), human decisions (agents,
 * disputes, mediators, buyers' replies to offers), returns (logistics) and
 * inspections; decides each case routed to review under the return policy
 * (a readable file, reloaded on SIGHUP), publishes the decision, the
 * return instructions or the goodwill offer, and the refunds and exchanges
 * finance and the warehouses act on. One batch is one transaction: the
 * batch's new cases are decided together with bulk statements, then every
 * other event in order. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_log.h"
#include "as_topics.h"
#include "review.h"

extern const as_migration_t as_sql_review[];

static review_conf_t conf;

#define C(f) offsetof(review_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_REVIEW_POLICY_FILE", AS_CFG_STR, "", 0, 4096, C(policy_file),
     "Return policy file (format in the README); empty: the built-in default policy. Re-read on SIGHUP; "
     "a file that does not parse is refused and the policy in force stays."},
};

static const double decision_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                         0.5,   1,      2.5,   5,    10,    30,   60,  600};
static const char *const verdicts[6] = {"unspecified", "approved", "rejected", "awaiting_evidence",
                                        "manual_review", "goodwill_offer"};

static review_policy_t *load_policy(const review_t *x, char *err, size_t errlen) {
  if (!x->conf->policy_file || !x->conf->policy_file[0])
    return review_policy_parse(review_policy_default, strlen(review_policy_default), err, errlen);
  return review_policy_load(x->conf->policy_file, err, errlen);
}

static int reload(void *state) {
  review_t *x = state;
  char err[300];
  review_policy_t *p = load_policy(x, err, sizeof err);
  if (!p) {
    as_counter_add(x->reloads_refused, 1);
    AS_ERROR(x->log, "policy refused, the previous one stays in force", AS_F_STR("detail", err),
             AS_F_STR("in_force", review_policy_version(x->policy)));
    return -EINVAL;
  }
  review_policy_free(x->policy);
  x->policy = p;
  as_counter_add(x->reloads_ok, 1);
  AS_INFO(x->log, "policy loaded", AS_F_STR("version", review_policy_version(p)));
  return 0;
}

static int init_metrics(review_t *x) {
  as_metrics_t *m = as_worker_metrics(x->w);
  x->decision_seconds = as_metrics_histogram(m, "as_review_decision_seconds",
                                             "Seconds from CaseOpened to the automatic decision.", NULL,
                                             decision_bounds, 16);
  bool ok = x->decision_seconds != NULL;
  for (int i = 1; i < 6; i++) {
    char labels[48];
    snprintf(labels, sizeof labels, "verdict=\"%s\"", verdicts[i]);
    x->decided[i] = as_metrics_counter(m, "as_review_decisions_total", "Decisions, by verdict.", labels);
    ok = ok && x->decided[i];
  }
  x->refunds = as_metrics_counter(m, "as_review_refunds_total", "Refunds issued.", NULL);
  x->refund_minor_capped = as_metrics_counter(m, "as_review_refunds_capped_total",
                                              "Refunds cut to what was left of the paid amount.", NULL);
  x->exchanges = as_metrics_counter(m, "as_review_exchanges_total", "Exchanges requested.", NULL);
  x->coupons = as_metrics_counter(m, "as_review_coupons_total", "Goodwill coupons issued.", NULL);
  x->reloads_ok = as_metrics_counter(m, "as_review_policy_reloads_total", "Policy loads.", "result=\"ok\"");
  x->reloads_refused = as_metrics_counter(m, "as_review_policy_reloads_total", "Policy loads.", "result=\"refused\"");
  x->sla_breaches = as_metrics_counter(m, "as_review_sla_breaches_total", "Review SLA clocks breached.", NULL);
  static const char *const whys[REVIEW_WHY_N] = {NULL, "unknown_case", "intake_mismatch", "ledger_mismatch"};
  for (int i = 1; i < REVIEW_WHY_N; i++) {
    char labels[48];
    snprintf(labels, sizeof labels, "why=\"%s\"", whys[i]);
    x->integrity_refused[i] = as_metrics_counter(
        m, "as_review_integrity_refused_total",
        "CaseOpened refused by the integrity check (not in the shared case table, or paid figures disagreeing "
        "with intake's record or the ledger).",
        labels);
    ok = ok && x->integrity_refused[i];
  }
  return ok && x->refunds && x->refund_minor_capped && x->exchanges && x->coupons && x->reloads_ok &&
                 x->reloads_refused && x->sla_breaches
             ? 0
             : -ENOMEM;
}

static void fini(void *state) {
  review_t *x = state;
  if (!x) return;
  review_policy_free(x->policy);
  free(x);
}

static int init(as_worker_t *w, void **state) {
  review_t *x = calloc(1, sizeof *x);
  if (!x) return -ENOMEM;
  x->w = w;
  x->log = as_worker_log(w);
  x->conf = &conf;
  x->schema = as_worker_schema(w);
  char err[300];
  x->policy = load_policy(x, err, sizeof err);
  if (!x->policy) {
    AS_ERROR(x->log, "policy refused", AS_F_STR("detail", err));
    free(x);
    return -EINVAL;
  }
  if (init_metrics(x) < 0) {
    fini(x);
    return -ENOMEM;
  }
  AS_INFO(x->log, "policy loaded", AS_F_STR("version", review_policy_version(x->policy)));
  *state = x;
  return 0;
}

static bool is_review_case(const as_msg_t *m) {
  return m->state == AS_MSG_NEW && m->env->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED &&
         strcmp(m->env->case_opened->route, "review") == 0;
}

static const char *const refused_detail[REVIEW_WHY_N] = {
    NULL, "unknown case: not in the shared case table for that order and buyer",
    "paid figures disagree with intake's record of the case",
    "paid figures disagree with the ledger's for the order"};

/* The batch's CaseOpened routed to review, with safe ids, and the ones the
 * integrity check lets through: a forged event (a case intake never
 * opened, paid figures that are not intake's) is refused and counted. An
 * event that is intake's record but disagrees with the ledger's figures
 * for the order is refused and counted too, but its case is real: it is
 * kept with ledger_bad set, for a person to decide. Returns 0 or an as_db
 * error; *k is how many of cause are kept. */
static int take_opened(review_t *x, as_tx_t *tx, as_msg_t *const *msgs, size_t n, as_msg_t **cause,
                       bool *ledger_bad, size_t *k) {
  const Aftersales__V1__CaseOpened **ev = calloc(n + 1, sizeof *ev);
  review_why_t *why = calloc(n + 1, sizeof *why);
  int rc = ev && why ? 0 : -ENOMEM;
  size_t m = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (!is_review_case(msgs[i])) continue;
    const Aftersales__V1__CaseOpened *e = msgs[i]->env->case_opened;
    if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->order_id) || !as_envelope_id_ok(e->buyer_id)) {
      as_tx_reject(msgs[i], "case, order or buyer id missing or unsafe");
      continue;
    }
    cause[m] = msgs[i], ev[m++] = e;
  }
  if (rc == 0 && m) rc = review_record_verify(x, tx, ev, m, why);
  *k = 0;
  for (size_t i = 0; rc == 0 && i < m; i++) {
    if (why[i] != REVIEW_WHY_OK) {
      as_counter_add(x->integrity_refused[why[i]], 1);
      as_tx_reject(cause[i], refused_detail[why[i]]);
    }
    if (why[i] == REVIEW_WHY_OK || why[i] == REVIEW_WHY_LEDGER) {
      ledger_bad[*k] = why[i] == REVIEW_WHY_LEDGER;
      cause[(*k)++] = cause[i];
    }
  }
  free(ev), free(why);
  return rc;
}

/* The batch's new cases, decided together. A real case that cannot be
 * decided (unpaid, currencies that disagree, figures that overflow ...)
 * goes to a person with the reason instead of being dropped; figures that
 * overflow, or that disagree with the ledger, are also a contract
 * violation, dead-lettered for the producer to see. */
static int decide_opened(review_t *x, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  review_rec_t *recs = calloc(n + 1, sizeof *recs);
  review_item_t *items = calloc(n + 1, sizeof *items);
  as_msg_t **cause = calloc(n + 1, sizeof *cause);
  bool *fresh = calloc(n + 1, sizeof *fresh), *ledger_bad = calloc(n + 1, sizeof *ledger_bad);
  size_t k = 0, m = 0;
  int rc = recs && items && cause && fresh && ledger_bad ? take_opened(x, tx, msgs, n, cause, ledger_bad, &k)
                                                         : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < k; i++) {
    bool overflow;
    const char *bad = review_record_from_event(&recs[i], cause[i]->env->case_opened, &overflow);
    if (!bad && ledger_bad[i]) bad = review_record_undecidable(&recs[i], "paid.ledger_mismatch");
    if (overflow && !ledger_bad[i]) as_tx_reject(cause[i], "amount overflows: the case goes to manual review");
    if (bad) AS_WARN(x->log, "case cannot be decided: manual review", AS_F_STR("case_id", recs[i].case_id),
                     AS_F_STR("rule", bad));
  }
  if (rc == 0 && k) rc = review_record_insert(x, tx, recs, k, fresh);
  int64_t now = as_now_us();
  for (size_t i = 0; rc == 0 && i < k; i++) {
    if (!fresh[i]) continue;
    items[m] = (review_item_t){.cause = cause[i], .rec = &recs[i],
                               .from_mask = REVIEW_STATE_BIT(OPEN) | REVIEW_STATE_BIT(AWAITING_EVIDENCE),
                               .actor = {"system", "review"}, .decided_at_us = now};
    if (recs[i].undecidable)
      items[m].d = (review_decision_t){.verdict = AFTERSALES__V1__VERDICT__VERDICT_MANUAL_REVIEW,
                                       .rule = recs[i].undecidable};
    else
      review_decide(x->policy, &recs[i].c, &items[m].d);
    m++;
  }
  if (rc == 0 && m) rc = review_apply(x, tx, items, m);
  for (size_t i = 0; rc == 0 && i < m; i++)
    if (!items[i].skip)
      as_histogram_observe(x->decision_seconds, (double)(now - items[i].cause->env->occurred_at_us) / 1e6);
  for (size_t i = 0; recs && i < k; i++) review_rec_free(&recs[i]);
  free(recs), free(items), free(cause), free(fresh), free(ledger_bad);
  return rc;
}

static int handle(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  review_t *x = state;
  int rc = decide_opened(x, tx, msgs, n);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (msgs[i]->state == AS_MSG_NEW && msgs[i]->env->payload_case != AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED)
      rc = review_events_apply(x, tx, msgs[i]);
  return rc;
}

static int on_deadline(void *state, as_tx_t *tx, const char *case_id, const char *kind, int64_t due_us) {
  return review_timers_fire(state, tx, case_id, kind, due_us);
}

static const char *const topics[] = {AS_TOPIC_NAME_CASES, AS_TOPIC_NAME_DECISIONS, AS_TOPIC_NAME_LOGISTICS,
                                     AS_TOPIC_NAME_INSPECTION};

/* Everything that travels on those topics: what review does not act on is
 * accepted and ignored, never dead-lettered. */
#define A(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const Aftersales__V1__Envelope__PayloadCase accepts[] = {
    A(CASE_OPENED),       A(REQUEST_REJECTED),   A(CASE_STATE_CHANGED),
    A(BUYER_ACKNOWLEDGED), A(SLA_BREACHED),      A(EVIDENCE_ADDED),
    A(BUYER_MESSAGE),     A(AGENT_DECISION),     A(DISPUTE_OPENED),
    A(MEDIATION_RULING),  A(BUYER_REPLIED),      A(TRACKING_SCAN),
    A(CARRIER_VERIFICATION_REQUESTED), A(CARRIER_VERIFICATION_ANSWERED), A(DELIVERY_OUTCOME),
    A(WAREHOUSE_RECEIPT), A(RETURN_RECEIVED),    A(RETURN_SHIPPED),
    A(INSPECTION_REQUESTED), A(QC_VERDICT),      A(INSPECTION_COMPLETED),
    A(SUPPLIER_QUALITY_ALERT), A(COMPENSATION_GRANTED),
};

static const as_service_t review_service = {
    .name = "review",
    .summary = "as-review: decides cases under the return policy; issues refunds, exchanges and goodwill",
    .topics = topics,
    .ntopics = sizeof topics / sizeof topics[0],
    .accepts = accepts,
    .naccepts = sizeof accepts / sizeof accepts[0],
    .migrations = as_sql_review,
    .config = config,
    .nconfig = sizeof config / sizeof config[0],
    .config_out = &conf,
    .init = init,
    .fini = fini,
    .handle = handle,
    .on_deadline = on_deadline,
    .reload = reload,
};

int main(int argc, char **argv) { return as_worker_main(&review_service, argc, argv); }
