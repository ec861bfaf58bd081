/* review_opened: the batch's new cases, decided together.
 *
 * Each CaseOpened routed to review is checked against the shared case
 * tables and intake's record of what was paid (review_record_verify), the
 * kept ones are written with bulk statements (review_record_insert), decided
 * under the policy and applied as one set (review_apply), so a batch of 500
 * cases costs a fixed number of round trips. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "as_log.h"
#include "review.h"

/* Cases routed to review are recorded and decided. Cases routed to
 * logistics are recorded with their ledger (a lost parcel is refunded or
 * reshipped here, review_logistics) but not decided: no rule, no review
 * SLA clock (intake's "pickup" clock is logistics' to meet). Complaints
 * are not review's at all. */
static bool is_review_case(const as_msg_t *m) {
  return strcmp(m->env->case_opened->route, "review") == 0;
}
static bool is_recorded_case(const as_msg_t *m) {
  return is_review_case(m) || strcmp(m->env->case_opened->route, "logistics") == 0;
}

static const char *const refused_detail[REVIEW_WHY_N] = {
    NULL, "unknown case: not in the shared case table for that order and buyer",
    "paid figures disagree with intake's record of the case",
    "paid figures disagree with the ledger's for the order"};

/* The latest instant a PostgreSQL timestamptz holds is in the year 294276;
 * the earliest is 4713 BC. review_due_us becomes the sla:review deadline's
 * due_at (to_timestamp): a value outside 1970..9999 is no due time intake
 * sets, and one outside PostgreSQL's range would fail the whole batch in
 * the database (handler_failed after bisection) instead of being refused
 * here with a reason. */
#define REVIEW_TIME_MAX_US 253402300799999999LL /* 9999-12-31T23:59:59.999999Z */

/* What the event carries that PostgreSQL would refuse and the integrity
 * check does not compare with intake's record; NULL if nothing. */
static const char *unstorable(const Aftersales__V1__CaseOpened *e) {
  if (!as_envelope_id_ok(e->case_id) || !as_envelope_id_ok(e->order_id) ||
      !as_envelope_id_ok(e->buyer_id))
    return "case, order or buyer id missing or unsafe";
  if (e->review_due_us < 0 || e->review_due_us > REVIEW_TIME_MAX_US)
    return "review_due_us outside 1970..9999";
  return NULL;
}

/* The batch's CaseOpened routed to review, with safe ids and storable
 * values, and the ones the integrity check lets through: a forged event (a case intake never
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
    if (!is_recorded_case(msgs[i])) continue;
    const Aftersales__V1__CaseOpened *e = msgs[i]->env->case_opened;
    const char *bad = unstorable(e);
    if (bad) {
      as_tx_reject(msgs[i], bad);
      continue;
    }
    cause[m] = msgs[i], ev[m++] = e;
  }
  if (rc == 0 && m) rc = review_record_verify(tx, ev, m, why);
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
int review_opened_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  review_t *x = state;
  review_rec_t *recs = calloc(n + 1, sizeof *recs);
  review_item_t *items = calloc(n + 1, sizeof *items);
  as_msg_t **cause = calloc(n + 1, sizeof *cause);
  bool *fresh = calloc(n + 1, sizeof *fresh), *ledger_bad = calloc(n + 1, sizeof *ledger_bad);
  size_t k = 0, m = 0;
  int rc = recs && items && cause && fresh && ledger_bad
               ? take_opened(x, tx, msgs, n, cause, ledger_bad, &k)
               : -ENOMEM;
  for (size_t i = 0; rc == 0 && i < k; i++) {
    bool overflow;
    const char *bad = review_record_from_event(&recs[i], cause[i]->env->case_opened, &overflow);
    if (!bad && ledger_bad[i]) bad = review_record_undecidable(&recs[i], "paid.ledger_mismatch");
    if (overflow && !ledger_bad[i])
      as_tx_reject(cause[i], recs[i].logistics
                                 ? "amount overflows: the logistics case is recorded without lines"
                                 : "amount overflows: the case goes to manual review");
    if (bad && recs[i].logistics)
      AS_WARN(x->log, "logistics case recorded without lines: nothing to refund",
              AS_F_STR("case_id", recs[i].case_id), AS_F_STR("rule", bad));
    else if (bad)
      AS_WARN(x->log, "case cannot be decided: manual review", AS_F_STR("case_id", recs[i].case_id),
              AS_F_STR("rule", bad));
  }
  if (rc == 0 && k) rc = review_record_insert(tx, recs, k, fresh);
  int64_t now = as_now_us();
  for (size_t i = 0; rc == 0 && i < k; i++) {
    if (!fresh[i] || !is_review_case(cause[i])) continue;
    items[m] =
        (review_item_t){.cause = cause[i],
                        .rec = &recs[i],
                        .from_mask = REVIEW_STATE_BIT(OPEN) | REVIEW_STATE_BIT(AWAITING_EVIDENCE),
                        .actor = {"system", "review"},
                        .decided_at_us = now};
    if (recs[i].undecidable)
      items[m].d = (review_decision_t){.verdict = AFTERSALES__V1__VERDICT__VERDICT_MANUAL_REVIEW,
                                       .rule = recs[i].undecidable};
    else if (review_proactive_is(cause[i]->env->case_opened))
      review_proactive_decide(x->policy, &recs[i].c, &items[m].d);
    else
      review_decide(x->policy, &recs[i].c, &items[m].d);
    m++;
  }
  if (rc == 0 && m) rc = review_apply(x, tx, items, m);
  for (size_t i = 0; rc == 0 && i < m; i++)
    if (!items[i].skip)
      as_histogram_observe(x->decision_seconds,
                           (double)(now - items[i].cause->env->occurred_at_us) / 1e6);
  for (size_t i = 0; recs && i < k; i++) review_rec_free(&recs[i]);
  free(recs), free(items), free(cause), free(fresh), free(ledger_bad);
  return rc;
}
