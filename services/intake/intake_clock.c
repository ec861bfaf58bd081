/* intake_clock: no case intake opens waits for ever.
 *
 * Every case intake opens gets a deadline in intake's deadlines table that
 * moves it on if nobody else does:
 *   - complaints (route complaints:<department>): "resolution" at the
 *     case's resolution due time (the department's hours). When it fires on
 *     a case not final, the case moves to ESCALATED, its resolution clock
 *     is stamped breached and SlaBreached (clock "resolution", escalated_to
 *     the department) is published;
 *   - review and logistics cases: "pickup" at the review due time (review)
 *     or AS_INTAKE_REVIEW_HOURS after opening (logistics). Review takes a
 *     case off OPEN when it consumes the CaseOpened, and so does logistics
 *     (CARRIER_VERIFYING when it asks the carrier or waits for the parcel's
 *     expected delivery date to ask, ESCALATED when it has no flow for the
 *     case: services/logistics/logi_cases.c); the worker that took the case
 *     owns its clocks from then on, so pickup never escalates a case another
 *     worker holds. A case still OPEN when pickup fires was picked up by
 *     nobody: ESCALATED, clock "review" (or "pickup") breached, SlaBreached
 *     escalated_to review_supervisors (logistics_supervisors).
 * An escalation arms "escalation_followup:1" 24 hours later: while the case
 * is still ESCALATED, SlaBreached (clock "escalation", escalated_to
 * aftersales_duty_manager) is published again and "escalation_followup:<n+1>"
 * armed, so an escalated case keeps a live deadline until a person decides
 * it. (Each follow-up is a new kind: the scanner marks the row it fired
 * after the callback, so re-arming the same (case, kind) would be undone.)
 * SlaBreached.due_at_us is the breached clock's due time in cases.sla_clocks.
 * The moves go through as_case_transition (actor system/intake). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_deadline.h"
#include "as_topics.h"
#include "as_uuid.h"
#include "intake.h"

#define FOLLOWUP_US (24LL * 3600 * 1000000)
#define ST(s) AFTERSALES__V1__CASE_STATE__CASE_STATE_##s

static const char sql_case[] = "SELECT state, route, order_id FROM cases.cases WHERE case_id = $1";
static const char sql_breached[] =
    "UPDATE cases.sla_clocks SET breached_at = now() WHERE case_id = $1 AND clock = $2"
    " AND met_at IS NULL AND breached_at IS NULL RETURNING (extract(epoch FROM due_at) * "
    "1e6)::bigint";
#define FOLLOWUP "escalation_followup:"

/* Arms follow-up number n of an escalated case. */
static int arm_followup(as_tx_t *tx, const char *case_id, long n) {
  char kind[48];
  snprintf(kind, sizeof kind, FOLLOWUP "%ld", n);
  return as_deadline_set(tx, case_id, kind, as_now_us() + FOLLOWUP_US);
}

/* Stamps the clock breached; *due_us becomes its due time if it has a row. */
static int stamp_breached(as_tx_t *tx, const char *case_id, const char *clock, int64_t *due_us) {
  const char *vals[2] = {case_id, clock};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_breached, 2, vals, &r);
  if (rc == 0 && PQntuples(r) == 1) *due_us = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return rc;
}

int intake_clock_arm(intake_t *x, as_tx_t *tx, const intake_req_t *reqs, size_t n) {
  (void)x;
  const char **ids = calloc(n ? n : 1, sizeof *ids), **kinds = calloc(n ? n : 1, sizeof *kinds);
  int64_t *due = calloc(n ? n : 1, sizeof *due);
  int rc = ids && kinds && due ? 0 : -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const intake_req_t *q = &reqs[i];
    if (q->fate != INTAKE_R_OPEN) continue;
    bool complaint = q->resolution_due_us != 0;
    ids[k] = q->case_id;
    kinds[k] = complaint ? "resolution" : "pickup";
    due[k++] = complaint ? q->resolution_due_us : q->pickup_due_us;
  }
  if (rc == 0 && k > 0) rc = as_deadline_set_many(tx, ids, kinds, due, k);
  free(ids);
  free(kinds);
  free(due);
  return rc;
}

typedef struct intake_case_row {
  as_case_state_t state;
  char route[64], order_id[AS_ID_MAX + 1];
} case_row_t;

/* Returns 0, -ENOENT (no such case) or an as_db error. */
static int read_case(as_tx_t *tx, const char *case_id, case_row_t *c) {
  const char *vals[1] = {case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_case, 1, vals, &r);
  if (rc == 0 && PQntuples(r) == 0) rc = -ENOENT;
  if (rc == 0 && as_case_state_parse(PQgetvalue(r, 0, 0), &c->state) < 0) rc = -ENOENT;
  if (rc == 0) {
    snprintf(c->route, sizeof c->route, "%s", PQgetvalue(r, 0, 1));
    snprintf(c->order_id, sizeof c->order_id, "%s", PQgetvalue(r, 0, 2));
  }
  PQclear(r);
  return rc;
}

static int publish_breach(intake_t *x, as_tx_t *tx, const char *case_id, const case_row_t *c,
                          const char *clock, int64_t due_us, const char *to) {
  Aftersales__V1__SlaBreached b = AFTERSALES__V1__SLA_BREACHED__INIT;
  b.case_id = (char *)case_id;
  b.clock = (char *)clock;
  b.due_at_us = due_us;
  b.breached_at_us = as_now_us();
  b.escalated_to = (char *)to;
  /* Derived from the deadline: a replay after a crash carries the same id. */
  char eid[AS_UUID_STRLEN + 1], name[160];
  int len =
      snprintf(name, sizeof name, "%s|SlaBreached|%s|%lld", case_id, clock, (long long)due_us);
  as_uuid_v5(eid, "aftersales.intake.event", name, (size_t)len);
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = eid;
  env.case_id = (char *)case_id;
  env.order_id = (char *)c->order_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SLA_BREACHED;
  env.sla_breached = &b;
  as_counter_add(x->breaches, 1);
  AS_INFO(x->log, "case escalated", AS_F_STR("case_id", case_id), AS_F_STR("clock", clock),
          AS_F_STR("escalated_to", to));
  return as_tx_publish(tx, NULL, AS_TOPIC_NAME_CASES, case_id, &env);
}

/* Who a first escalation goes to: the complaint's department, else the
 * supervisors of the route that did not pick the case up. */
static void escalated_to(const case_row_t *c, char *out, size_t cap) {
  if (strncmp(c->route, "complaints:", 11) == 0)
    snprintf(out, cap, "%s", c->route + 11);
  else
    snprintf(out, cap, "%s_supervisors", c->route[0] ? c->route : "review");
}

/* resolution / pickup fired: escalate if the case is still where the clock
 * says nobody moved it (pickup: OPEN; resolution: any state that may be
 * escalated). An already escalated case only gets its follow-up armed. */
static int escalate(intake_t *x, as_tx_t *tx, const char *case_id, bool pickup, int64_t due_us) {
  case_row_t c;
  int rc = read_case(tx, case_id, &c);
  if (rc == -ENOENT) return 0;
  if (rc < 0) return rc;
  if (c.state == ST(ESCALATED) && !pickup) return arm_followup(tx, case_id, 1);
  if (pickup ? c.state != ST(OPEN) : !as_case_move_legal(c.state, ST(ESCALATED))) return 0;
  const char *clock = !pickup                             ? "resolution"
                      : strcmp(c.route, "logistics") == 0 ? "pickup"
                                                          : "review";
  char why[64], to[80];
  snprintf(why, sizeof why, "%s deadline passed", clock);
  rc = as_case_transition(tx, case_id, ST(ESCALATED), (as_case_actor_t){"system", "intake"}, why,
                          NULL, NULL, NULL, NULL);
  if (rc == -EPERM || rc == -ENOENT) return 0;
  if (rc == 0) rc = stamp_breached(tx, case_id, clock, &due_us);
  escalated_to(&c, to, sizeof to);
  if (rc == 0) rc = publish_breach(x, tx, case_id, &c, clock, due_us, to);
  if (rc == 0) rc = arm_followup(tx, case_id, 1);
  return rc;
}

/* Follow-up n fired: still escalated, tell the duty manager again. */
static int follow_up(intake_t *x, as_tx_t *tx, const char *case_id, long n, int64_t due_us) {
  case_row_t c;
  int rc = read_case(tx, case_id, &c);
  if (rc == -ENOENT) return 0;
  if (rc < 0 || c.state != ST(ESCALATED)) return rc;
  rc = publish_breach(x, tx, case_id, &c, "escalation", due_us, "aftersales_duty_manager");
  if (rc == 0) rc = arm_followup(tx, case_id, n + 1);
  return rc;
}

int intake_clock_resolution(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                            int64_t due_us) {
  (void)kind;
  return escalate(state, tx, case_id, false, due_us);
}

int intake_clock_pickup(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                        int64_t due_us) {
  (void)kind;
  return escalate(state, tx, case_id, true, due_us);
}

int intake_clock_followup(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                          int64_t due_us) {
  return follow_up(state, tx, case_id, strtol(kind + strlen(FOLLOWUP), NULL, 10), due_us);
}
