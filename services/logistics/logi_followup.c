/* logi_followup: no case logistics holds waits for ever. A case logistics
 * escalated (no flow for it here), or one it published a DeliveryOutcome
 * for that is still in carrier verification (review has not carried the
 * outcome out), keeps a deadline "followup:<n>" keyed by its id: every
 * AS_LOGISTICS_FOLLOWUP_HOURS while it stays there, SlaBreached (clock
 * "escalation" to the duty manager, or "delivery_outcome" to the review
 * supervisors) and "followup:<n+1>" armed. Each follow-up is a new kind:
 * the scanner marks the row it fired after the callback, so re-arming the
 * same (case, kind) would be undone. A case that moved on ends the chain. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_case.h"
#include "as_deadline.h"
#include "as_log.h"
#include "logistics.h"

#define FOLLOWUP "followup:"
#define ST(s) AFTERSALES__V1__CASE_STATE__CASE_STATE_##s

int logi_followup_arm(logi_t *x, as_tx_t *tx, const char *case_id, long n) {
  char kind[32];
  snprintf(kind, sizeof kind, FOLLOWUP "%ld", n);
  return as_deadline_set(tx, case_id, kind, as_now_us() + x->conf->followup_hours * LOGI_HOUR_US);
}

/* The case's shared state, and whether an inquiry of it is still open. */
static const char sql_state[] =
    "SELECT c.state, c.order_id, EXISTS (SELECT 1 FROM inquiries i WHERE i.case_id = c.case_id"
    " AND i.closed_at_us IS NULL) FROM cases.cases c WHERE c.case_id = $1";

int logi_timers_followup(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                         int64_t due_us) {
  logi_t *x = state;
  const char *v[1] = {case_id};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), sql_state, 1, v, &r);
  if (rc || PQntuples(r) != 1) return PQclear(r), rc;
  as_case_state_t s = ST(UNSPECIFIED);
  bool asking = PQgetvalue(r, 0, 2)[0] == 't';
  const char *clock = NULL, *to = NULL;
  if (as_case_state_parse(PQgetvalue(r, 0, 0), &s) == 0 && s == ST(ESCALATED))
    clock = "escalation", to = "aftersales_duty_manager";
  else if (s == ST(CARRIER_VERIFYING) && !asking)
    clock = "delivery_outcome", to = "review_supervisors";
  if (clock) rc = logi_breach(tx, NULL, case_id, PQgetvalue(r, 0, 1), clock, due_us, to);
  if (clock && rc == 0)
    rc = logi_followup_arm(x, tx, case_id, strtol(kind + strlen(FOLLOWUP), NULL, 10) + 1);
  if (clock && rc == 0)
    AS_WARN(x->log, "logistics case still waiting", AS_F_STR("case_id", case_id),
            AS_F_STR("clock", clock));
  PQclear(r);
  return rc;
}
