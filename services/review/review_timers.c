/* review_timers: what happens when nobody acts in time.
 *
 * Deadlines are rows in review's deadlines table, fired once by whichever
 * instance's scanner takes them (as_deadline). A case still waiting for
 * evidence, for its return parcel or for the buyer's answer to an offer is
 * closed, and the buyer is told why (ReviewDecided). A case still with a
 * human when its review SLA passes is escalated, the breach is stamped on
 * its clock and announced (SlaBreached). A deadline that finds its case
 * already moved on does nothing.
 *
 * Every state review leaves a case in while it waits has a live deadline
 * (the fleet's invariant: no case waits for ever). Where nothing legal can
 * move the case on (a mediator's ruling awaited, a supervisor's decision
 * on an escalated case) a
 * follow-up announces the wait with SlaBreached to the desk that owns it
 * and re-arms itself every REVIEW_FOLLOW_UP_US. The scanner marks the row
 * it fired after the callback returns, so a follow-up re-arms under its
 * twin kind (the same name with a trailing '+'). */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "as_deadline.h"
#include "as_log.h"
#include "as_topics.h"
#include "review.h"

#define ST(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x

static const as_case_actor_t timer_actor = {"system", "review:deadline"};

typedef struct closing {
  as_case_state_t waiting;
  const char *rule;
} closing_t;

/* Kinds evidence, return and offer. */
enum { CLOSE_EVIDENCE, CLOSE_RETURN, CLOSE_OFFER };
static const closing_t closings[] = {
    [CLOSE_EVIDENCE] = {ST(AWAITING_EVIDENCE), "evidence.deadline_passed"},
    [CLOSE_RETURN] = {ST(AWAITING_RETURN), "return.not_shipped"},
    [CLOSE_OFFER] = {ST(GOODWILL_OFFERED), "goodwill.expired"},
};

static int close_case(review_t *x, as_tx_t *tx, review_rec_t *rec, const closing_t *c) {
  if (rec->state != c->waiting) return 0;
  int mrc;
  int rc = review_move(tx, rec->case_id, ST(CLOSED), 1u << c->waiting, timer_actor, c->rule, NULL,
                       NULL, &mrc);
  if (rc < 0 || mrc != 0) return rc;
  review_item_t it = {.rec = rec, .actor = timer_actor, .decided_at_us = as_now_us()};
  it.d.verdict = V(REJECTED);
  it.d.rule = c->rule;
  return review_publish_decided(x, tx, &it);
}

static int publish_breach(as_tx_t *tx, const review_rec_t *rec, const char *clock, int64_t due_us,
                          const char *to) {
  Aftersales__V1__SlaBreached b = AFTERSALES__V1__SLA_BREACHED__INIT;
  b.case_id = (char *)rec->case_id;
  b.clock = (char *)clock;
  b.due_at_us = due_us;
  b.breached_at_us = as_now_us();
  b.escalated_to = (char *)to;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SLA_BREACHED;
  env.sla_breached = &b;
  return review_publish(tx, NULL, AS_TOPIC_NAME_CASES, rec->case_id, rec->order_id, &env);
}

/* Review SLA: undecided cases go to a human; a case already with one is
 * escalated to the supervisors' queue. Either way the clock is breached. */
static int review_breach(review_t *x, as_tx_t *tx, review_rec_t *rec, const char *follow_kind) {
  uint32_t undecided = REVIEW_STATE_BIT(OPEN) | REVIEW_STATE_BIT(IN_REVIEW);
  as_case_state_t to;
  const char *queue;
  if ((1u << rec->state) & undecided)
    to = ST(MANUAL_REVIEW), queue = "manual_review";
  else if (rec->state == ST(MANUAL_REVIEW))
    to = ST(ESCALATED), queue = "review_supervisors";
  else
    return 0;
  int mrc;
  int rc = review_move(tx, rec->case_id, to, 1u << rec->state, timer_actor, "sla.review_breached",
                       NULL, NULL, &mrc);
  if (rc == 0 && mrc != 0)
    AS_WARN(x->log, "review SLA breach: escalation refused", AS_F_STR("case_id", rec->case_id),
            AS_F_INT("rc", mrc));
  if (rc < 0 || mrc != 0) return rc;
  const char *vals[1] = {rec->case_id};
  rc = as_db_query(
      as_tx_db(tx),
      "UPDATE cases.sla_clocks SET breached_at = now() WHERE case_id = $1 AND clock = 'review'"
      " AND met_at IS NULL AND breached_at IS NULL",
      1, vals, NULL);
  if (rc == 0) rc = publish_breach(tx, rec, "review", rec->review_due_us, queue);
  if (rc == 0) as_counter_add(x->sla_breaches, 1);
  /* MANUAL_REVIEW and ESCALATED wait for a person: the follow-up escalates
   * or reminds the supervisors until one decides */
  if (rc == 0)
    rc = as_deadline_set(tx, rec->case_id, follow_kind, as_now_us() + REVIEW_FOLLOW_UP_US);
  return rc;
}

typedef struct follow {
  const char *kind; /* and its twin kind + "+" */
  as_case_state_t waiting;
  const char *clock, *desk;
} follow_t;

enum { FOLLOW_MEDIATION, FOLLOW_ESCALATED };
static const follow_t follows[] = {
    [FOLLOW_MEDIATION] = {"mediation", ST(DISPUTED), "mediation", "mediators"},
    [FOLLOW_ESCALATED] = {"sla:escalated", ST(ESCALATED), "review", "review_supervisors"},
};

/* The case still waits where the follow-up expects: the desk hears of it
 * again (a manual-review case still undecided is escalated first) and the
 * twin deadline is armed. */
static int follow_up(review_t *x, as_tx_t *tx, review_rec_t *rec, const follow_t *f,
                     const char *kind, int64_t due_us) {
  char twin[40];
  snprintf(twin, sizeof twin, "%s%s", f->kind, strlen(kind) > strlen(f->kind) ? "" : "+");
  if (f->waiting == ST(ESCALATED) && rec->state == ST(MANUAL_REVIEW))
    return review_breach(x, tx, rec, twin);
  if (rec->state != f->waiting) return 0;
  int rc = publish_breach(tx, rec, f->clock, due_us, f->desk);
  if (rc == 0) rc = as_deadline_set(tx, rec->case_id, twin, as_now_us() + REVIEW_FOLLOW_UP_US);
  return rc;
}

int review_timers_arm(as_tx_t *tx, const char *case_id, const char *kind, int64_t wait_us) {
  return as_deadline_set(tx, case_id, kind, as_now_us() + wait_us);
}

int review_timers_cancel(as_tx_t *tx, const char *case_id, const char *kind) {
  char twin[40];
  snprintf(twin, sizeof twin, "%s+", kind);
  int rc = as_deadline_cancel(tx, case_id, kind);
  return rc ? rc : as_deadline_cancel(tx, case_id, twin);
}

typedef int (*timer_fn)(review_t *x, as_tx_t *tx, review_rec_t *rec, const char *kind,
                        int64_t due_us, size_t which);

static int on_close(review_t *x, as_tx_t *tx, review_rec_t *rec, const char *kind, int64_t due_us,
                    size_t which) {
  (void)kind;
  (void)due_us;
  return close_case(x, tx, rec, &closings[which]);
}

static int on_breach(review_t *x, as_tx_t *tx, review_rec_t *rec, const char *kind, int64_t due_us,
                     size_t which) {
  (void)kind;
  (void)due_us;
  (void)which;
  return review_breach(x, tx, rec, "sla:escalated");
}

static int on_follow(review_t *x, as_tx_t *tx, review_rec_t *rec, const char *kind, int64_t due_us,
                     size_t which) {
  return follow_up(x, tx, rec, &follows[which], kind, due_us);
}

/* Loads the case a deadline is keyed by and hands it to fn; a case review
 * does not hold has nothing left to time. */
static int with_case(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                     int64_t due_us, timer_fn fn, size_t which) {
  review_rec_t rec;
  int rc = review_record_load(tx, case_id, &rec);
  if (rc == -ENOENT) return 0;
  if (rc == 0) rc = fn(state, tx, &rec, kind, due_us, which);
  review_rec_free(&rec);
  return rc;
}

/* The deadline kinds' entry points (review.h, main.c's table). */
#define TIMER(name, fn, which)                                                              \
  int review_timers_##name(void *state, as_tx_t *tx, const char *case_id, const char *kind, \
                           int64_t due_us) {                                                \
    return with_case(state, tx, case_id, kind, due_us, fn, which);                          \
  }
TIMER(evidence, on_close, CLOSE_EVIDENCE)
TIMER(return_due, on_close, CLOSE_RETURN)
TIMER(offer, on_close, CLOSE_OFFER)
TIMER(sla, on_breach, 0)
TIMER(mediation, on_follow, FOLLOW_MEDIATION)
TIMER(escalated, on_follow, FOLLOW_ESCALATED)

/* Retired (issue 12): the inspection worker owns the inspection's clock
 * (AS_INSPECTION_SLA_HOURS) and announces its breach; a row armed before
 * fires once and does nothing, so nothing re-arms it. */
int review_timers_inspection(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                             int64_t due_us) {
  (void)state, (void)tx, (void)case_id, (void)kind, (void)due_us;
  return 0;
}

/* Retired (issue 13): the logistics worker owns a return parcel's transit
 * (AS_LOGISTICS_RETURN_TRANSIT_DAYS: it asks the carrier, and a lost
 * parcel comes back as a DeliveryOutcome); a row armed before fires once
 * and does nothing, so nothing re-arms it. */
int review_timers_transit(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                          int64_t due_us) {
  (void)state, (void)tx, (void)case_id, (void)kind, (void)due_us;
  return 0;
}
