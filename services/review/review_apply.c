/* review_apply: a decision becomes facts.
 *
 * For a set of decided cases (a batch of CaseOpened, or one re-decision
 * after evidence or an agent's verdict) this moves each case through the
 * one transition function, records the decision and the policy version,
 * arms the deadlines the decision implies (evidence, return, offer, review
 * SLA), marks the review SLA clock met, publishes what the buyer and the
 * other workers need (ReviewDecided, ReturnInstructions, GoodwillOffered),
 * and pays at once what needs no return (refund-only approvals). Every
 * step is one bulk statement for the whole set, so a batch of 500 cases
 * costs about a dozen round trips. */
#include <errno.h>
#include <stdint.h>
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

static as_case_state_t target_of(int verdict) {
  switch (verdict) {
    case V(APPROVED):
      return ST(APPROVED);
    case V(REJECTED):
      return ST(REJECTED);
    case V(AWAITING_EVIDENCE):
      return ST(AWAITING_EVIDENCE);
    case V(GOODWILL_OFFER):
      return ST(GOODWILL_OFFERED);
    default:
      return ST(MANUAL_REVIEW);
  }
}

/* A claim QC judges from its evidence waits in INSPECTING. */
static as_case_state_t target(const review_decision_t *d) {
  return d->inspect ? ST(INSPECTING) : target_of(d->verdict);
}

static void detail_json(char *buf, size_t cap, const review_t *x, const review_item_t *it) {
  char rule[96], ver[160];
  as_log_json_escape(rule, sizeof rule, it->d.rule ? it->d.rule : "");
  as_log_json_escape(ver, sizeof ver, review_policy_version(x->policy));
  snprintf(
      buf, cap,
      "{\"rule\":%s,\"policy_version\":%s,\"verdict\":%d,\"outcome\":%d,\"amount_minor\":%lld}",
      rule, ver, it->d.verdict, it->d.outcome, (long long)it->d.amount_minor);
}

int review_move(as_tx_t *tx, const char *case_id, as_case_state_t to, uint32_t from_mask,
                as_case_actor_t actor, const char *why, const as_msg_t *cause, const char *detail,
                int *rc) {
  as_case_move_t m = {.case_id = case_id,
                      .to = to,
                      .from_mask = from_mask,
                      .actor = actor,
                      .why = why,
                      .event_id = cause && cause->env ? cause->env->event_id : NULL,
                      .detail_json = detail};
  int err = as_case_transition_many(tx, &m, 1);
  *rc = m.rc;
  return err;
}

/* Phase one: each case leaves the state it was decided in. A case that is
 * no longer there (another instance, an agent, a timer got there first) is
 * skipped whole: its decision is stale. */
static int move_cases(review_t *x, as_tx_t *tx, review_item_t *it, size_t n) {
  as_case_move_t *m = calloc(2 * n + 1, sizeof *m);
  char(*details)[512] = calloc(n + 1, sizeof *details);
  size_t *first = calloc(n + 1, sizeof *first);
  if (!m || !details || !first) {
    free(m), free(details), free(first);
    return -ENOMEM;
  }
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (it[i].skip) continue;
    const char *ev = it[i].cause && it[i].cause->env ? it[i].cause->env->event_id : NULL;
    detail_json(details[i], sizeof details[i], x, &it[i]);
    const char *why = it[i].why ? it[i].why : it[i].d.rule;
    first[i] = SIZE_MAX;
    /* Intake may already have put the case where review would (awaiting
     * evidence): the decision stands without a move. */
    if (target(&it[i].d) == it[i].rec->state) continue;
    first[i] = k;
    m[k++] = (as_case_move_t){.case_id = it[i].rec->case_id,
                              .to = target(&it[i].d),
                              .from_mask = it[i].from_mask,
                              .actor = it[i].actor,
                              .why = why,
                              .event_id = ev,
                              .detail_json = details[i]};
    if (it[i].d.verdict == V(APPROVED) && it[i].d.return_required)
      m[k++] = (as_case_move_t){.case_id = it[i].rec->case_id,
                                .to = ST(AWAITING_RETURN),
                                .from_mask = REVIEW_STATE_BIT(APPROVED),
                                .actor = it[i].actor,
                                .why = "return.instructions_sent",
                                .event_id = ev};
  }
  int rc = as_case_transition_many(tx, m, k);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (!it[i].skip && first[i] != SIZE_MAX && m[first[i]].rc != 0) it[i].skip = true;
  free(m), free(details), free(first);
  return rc;
}

enum {
  D_CASE,
  D_VERDICT,
  D_OUTCOME,
  D_RULE,
  D_POLICY,
  D_BY,
  D_PAYER,
  D_APPROVED,
  D_RETURN,
  D_REFUND_SHIP,
  D_OFFER_ID,
  D_OFFER_KIND,
  D_OFFER_MINOR,
  D_SHIP_REFUND
};
static const as_col_t decision_cols[] = {
    [D_CASE] = {"case_id", "text"},
    [D_VERDICT] = {"verdict", "int"},
    [D_OUTCOME] = {"outcome", "int"},
    [D_RULE] = {"rule", "text"},
    [D_POLICY] = {"policy_version", "text"},
    [D_BY] = {"decided_by", "text"},
    [D_PAYER] = {"shipping_payer", "int"},
    [D_APPROVED] = {"approved_minor", "bigint"},
    [D_RETURN] = {"return_required", "bool"},
    [D_REFUND_SHIP] = {"refund_shipping", "bool"},
    [D_OFFER_ID] = {"offer_id", "text"},
    [D_OFFER_KIND] = {"offer_kind", "int"},
    [D_OFFER_MINOR] = {"offer_minor", "bigint"},
    [D_SHIP_REFUND] = {"shipping_refund", "int"},
};
static const as_bulk_t sql_decision = AS_BULK(
    "UPDATE cases r SET verdict = u.verdict, outcome = u.outcome, rule = u.rule,"
    " policy_version = u.policy_version, decided_by = u.decided_by, shipping_payer = "
    "u.shipping_payer,"
    " approved_minor = u.approved_minor, return_required = u.return_required,"
    " refund_shipping = u.refund_shipping, offer_id = nullif(u.offer_id, ''), offer_kind = "
    "u.offer_kind,"
    " offer_minor = u.offer_minor, shipping_refund = u.shipping_refund, updated_at = now()"
    " FROM {{u}} WHERE r.case_id = u.case_id",
    decision_cols);
static const as_col_t met_cols[] = {{"case_id", "text"}};
static const as_bulk_t sql_met = AS_BULK(
    "UPDATE cases.sla_clocks SET met_at = now() WHERE clock = 'review'"
    " AND case_id = ANY({{$case_id}}) AND met_at IS NULL AND breached_at IS NULL",
    met_cols);

void review_offer_id(char out[40], const char *case_id) {
  as_uuid_v5(out, "aftersales.goodwill-offer", case_id, strlen(case_id));
}

static int record_decisions(review_t *x, as_tx_t *tx, review_item_t *it, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_decision);
  for (size_t i = 0; i < n; i++) {
    if (it[i].skip) continue;
    const review_decision_t *d = &it[i].d;
    bool offer = d->verdict == V(GOODWILL_OFFER);
    char oid[40] = "";
    if (offer) review_offer_id(oid, it[i].rec->case_id);
    as_cols_str(&c, D_CASE, it[i].rec->case_id);
    as_cols_int(&c, D_VERDICT, d->verdict);
    as_cols_int(&c, D_OUTCOME, d->outcome);
    as_cols_str(&c, D_RULE, d->rule);
    as_cols_str(&c, D_POLICY, review_policy_version(x->policy));
    as_cols_str(&c, D_BY, it[i].actor.id);
    as_cols_int(&c, D_PAYER, d->shipping_payer);
    /* a QC-judged claim keeps what a confirmed defect pays */
    as_cols_int(&c, D_APPROVED, d->verdict == V(APPROVED) || d->inspect ? d->amount_minor : 0);
    as_cols_bool(&c, D_RETURN, d->return_required);
    as_cols_bool(&c, D_REFUND_SHIP, d->refund_shipping);
    as_cols_str(&c, D_OFFER_ID, oid);
    as_cols_int(&c, D_OFFER_KIND, offer ? d->outcome : 0);
    as_cols_int(&c, D_OFFER_MINOR, offer ? d->amount_minor : 0);
    as_cols_int(&c, D_SHIP_REFUND, d->shipping_refund);
    it[i].rec->shipping_refund =
        d->shipping_refund; /* the decision in force, for a refund paid now */
  }
  int rc = as_cols_run(&c, as_tx_db(tx), NULL);
  as_cols_free(&c);
  return rc;
}

/* The deadline each decision arms, and the review SLA: a case left to a
 * human keeps its clock running (sla:review at the due time intake set);
 * every other decision meets it now. */
static int arm_deadlines(as_tx_t *tx, review_item_t *it, size_t n) {
  const char **ids = calloc(n + 1, sizeof *ids), **kinds = calloc(n + 1, sizeof *kinds);
  int64_t *due = calloc(n + 1, sizeof *due);
  as_cols_t met;
  as_cols_init(&met, &sql_met);
  int rc = ids && kinds && due ? 0 : -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (it[i].skip) continue;
    const review_decision_t *d = &it[i].d;
    int64_t at = it[i].decided_at_us;
    const char *kind = NULL;
    int64_t when = 0;
    if (d->verdict == V(AWAITING_EVIDENCE)) kind = "evidence", when = at + d->evidence_wait_us;
    if (d->verdict == V(APPROVED) && d->return_required)
      kind = "return", when = at + d->return_wait_us;
    if (d->verdict == V(GOODWILL_OFFER)) kind = "offer", when = at + d->offer_wait_us;
    /* QC's clock is the inspection worker's (AS_INSPECTION_SLA_HOURS) */
    bool person = d->verdict == V(MANUAL_REVIEW) && !d->inspect;
    if (person) kind = "sla:review", when = it[i].rec->review_due_us;
    if (kind) ids[k] = it[i].rec->case_id, kinds[k] = kind, due[k++] = when;
    if (!person) as_cols_str(&met, 0, it[i].rec->case_id);
  }
  if (rc == 0 && k) rc = as_deadline_set_many(tx, ids, kinds, due, k);
  if (rc == 0) rc = as_cols_run(&met, as_tx_db(tx), NULL);
  as_cols_free(&met);
  free(ids), free(kinds), free(due);
  return rc;
}

int review_publish_decided(review_t *x, as_tx_t *tx, const review_item_t *it) {
  const review_decision_t *d = &it->d;
  Aftersales__V1__Actor by = AFTERSALES__V1__ACTOR__INIT;
  by.kind = strcmp(it->actor.kind, "agent") == 0 ? AFTERSALES__V1__ACTOR_KIND__ACTOR_KIND_AGENT
                                                 : AFTERSALES__V1__ACTOR_KIND__ACTOR_KIND_SYSTEM;
  by.id = (char *)it->actor.id;
  Aftersales__V1__Money amt =
      review_money(d->verdict == V(APPROVED) ? d->amount_minor : 0, it->rec->c.currency);
  Aftersales__V1__ReviewDecided rd = AFTERSALES__V1__REVIEW_DECIDED__INIT;
  rd.case_id = (char *)it->rec->case_id;
  rd.verdict = d->verdict;
  rd.outcome = d->outcome;
  rd.reason_code = (char *)d->rule;
  rd.policy_version = (char *)review_policy_version(x->policy);
  rd.shipping_payer = d->shipping_payer;
  rd.approved_amount = &amt;
  rd.decided_at_us = it->decided_at_us;
  rd.decided_by = &by;
  if (d->verdict == V(AWAITING_EVIDENCE))
    rd.evidence_due_us = it->decided_at_us + d->evidence_wait_us;
  rd.case_state = it->to                                            ? it->to
                  : d->verdict == V(APPROVED) && d->return_required ? ST(AWAITING_RETURN)
                                                                    : target(d);
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_REVIEW_DECIDED;
  env.review_decided = &rd;
  return review_publish(tx, it->cause, AS_TOPIC_NAME_REVIEW, rd.case_id, it->rec->order_id, &env);
}

int review_publish_outcome(review_t *x, as_tx_t *tx, const as_msg_t *cause, const review_rec_t *rec,
                           int verdict, const char *rule, as_case_state_t to,
                           as_case_actor_t actor) {
  review_item_t it = {.cause = cause,
                      .rec = (review_rec_t *)rec,
                      .actor = actor,
                      .to = to,
                      .decided_at_us = as_now_us()};
  it.d.verdict = verdict;
  it.d.rule = rule;
  return review_publish_decided(x, tx, &it);
}

static int publish_instructions(as_tx_t *tx, const review_item_t *it) {
  const review_decision_t *d = &it->d;
  Aftersales__V1__ReturnInstructions ri = AFTERSALES__V1__RETURN_INSTRUCTIONS__INIT;
  ri.case_id = (char *)it->rec->case_id;
  ri.warehouse_id = (char *)d->warehouse_id;
  ri.return_address = (char *)d->return_address;
  ri.packaging = (char *)d->packaging;
  ri.method = d->return_method;
  ri.shipping_payer = d->shipping_payer;
  ri.ship_by_us = it->decided_at_us + d->return_wait_us;
  ri.locale = (char *)it->rec->locale;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_RETURN_INSTRUCTIONS;
  env.return_instructions = &ri;
  return review_publish(tx, it->cause, AS_TOPIC_NAME_REVIEW, ri.case_id, it->rec->order_id, &env);
}

static int publish_offer(review_t *x, as_tx_t *tx, const review_item_t *it) {
  const review_decision_t *d = &it->d;
  char oid[40];
  review_offer_id(oid, it->rec->case_id);
  Aftersales__V1__Money amt = review_money(d->amount_minor, it->rec->c.currency);
  Aftersales__V1__GoodwillOffered go = AFTERSALES__V1__GOODWILL_OFFERED__INIT;
  go.case_id = (char *)it->rec->case_id;
  go.offer_id = oid;
  go.kind = d->outcome;
  go.amount = &amt;
  go.percent = d->percent;
  go.expires_at_us = it->decided_at_us + d->offer_wait_us;
  go.policy_version = (char *)review_policy_version(x->policy);
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_GOODWILL_OFFERED;
  env.goodwill_offered = &go;
  return review_publish(tx, it->cause, AS_TOPIC_NAME_REVIEW, go.case_id, it->rec->order_id, &env);
}

static int publish_all(review_t *x, as_tx_t *tx, review_item_t *it, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (it[i].skip) continue;
    const review_decision_t *d = &it[i].d;
    rc = review_publish_decided(x, tx, &it[i]);
    if (rc == 0 && d->verdict == V(APPROVED) && d->return_required)
      rc = publish_instructions(tx, &it[i]);
    if (rc == 0 && d->verdict == V(GOODWILL_OFFER)) rc = publish_offer(x, tx, &it[i]);
    if (rc == 0 && d->inspect) rc = review_inspection_request(x, tx, &it[i]);
    if (rc == 0 && d->verdict > 0 && d->verdict < 6) as_counter_add(x->decided[d->verdict], 1);
  }
  return rc;
}

static bool pays_now(const review_item_t *it) {
  return !it->skip && it->d.verdict == V(APPROVED) && !it->d.return_required &&
         it->d.outcome == O(REFUND);
}

/* Refund-only approvals pay now, all together; a case with nothing left
 * to refund under the ledger closes instead. */
static int pay_now(review_t *x, as_tx_t *tx, review_item_t *it, size_t n) {
  review_pay_t *p = calloc(n + 1, sizeof *p);
  as_case_move_t *m = calloc(n + 1, sizeof *m);
  int rc = p && m ? 0 : -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (pays_now(&it[i]))
      p[k++] = (review_pay_t){.cause = it[i].cause,
                              .rec = it[i].rec,
                              /* an agent may approve less than the claim */
                              .kind = it[i].d.amount_minor < it[i].rec->c.claimed_minor
                                          ? REVIEW_PAY_PARTIAL
                                          : REVIEW_PAY_ITEMS,
                              .amount_minor = it[i].d.amount_minor,
                              .with_shipping = it[i].d.refund_shipping,
                              .reason_code = it[i].d.rule};
  if (rc == 0 && k) rc = review_money_refund_many(x, tx, p, k);
  size_t j = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (!pays_now(&it[i])) continue;
    bool paid = p[j++].paid > 0;
    m[j - 1] = (as_case_move_t){
        .case_id = it[i].rec->case_id,
        .to = paid ? ST(REFUNDED) : ST(CLOSED),
        .from_mask = REVIEW_STATE_BIT(APPROVED),
        .actor = it[i].actor,
        .why = paid ? "refund.issued" : "refund.nothing_left",
        .event_id = it[i].cause && it[i].cause->env ? it[i].cause->env->event_id : NULL};
  }
  if (rc == 0 && k) rc = as_case_transition_many(tx, m, k);
  /* the buyer was told "approved": a close with nothing to pay is news */
  for (size_t i = 0; rc == 0 && i < k; i++)
    if (p[i].paid == 0 && m[i].rc == 0)
      rc = review_publish_outcome(x, tx, p[i].cause, p[i].rec, V(REJECTED), "refund.nothing_left",
                                  ST(CLOSED), m[i].actor);
  free(p), free(m);
  return rc;
}

int review_apply(review_t *x, as_tx_t *tx, review_item_t *items, size_t n) {
  int rc = move_cases(x, tx, items, n);
  if (rc == 0) rc = record_decisions(x, tx, items, n);
  if (rc == 0) rc = arm_deadlines(tx, items, n);
  if (rc == 0) rc = publish_all(x, tx, items, n);
  if (rc == 0) rc = pay_now(x, tx, items, n);
  return rc;
}
