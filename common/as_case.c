/* as_case: case creation and the legal-move table of the case life cycle. */
#include "as_case.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(x) AFTERSALES__V1__CASE_STATE__CASE_STATE_##x
#define B(x) (1u << S(x))
#define NSTATES (S(CLOSED) + 1)

static const char *const names[NSTATES] = {
    [S(OPEN)] = "OPEN", [S(AWAITING_EVIDENCE)] = "AWAITING_EVIDENCE",
    [S(IN_REVIEW)] = "IN_REVIEW", [S(MANUAL_REVIEW)] = "MANUAL_REVIEW",
    [S(GOODWILL_OFFERED)] = "GOODWILL_OFFERED", [S(APPROVED)] = "APPROVED",
    [S(AWAITING_RETURN)] = "AWAITING_RETURN", [S(RETURN_RECEIVED)] = "RETURN_RECEIVED",
    [S(INSPECTING)] = "INSPECTING", [S(REFUNDED)] = "REFUNDED", [S(EXCHANGED)] = "EXCHANGED",
    [S(REJECTED)] = "REJECTED", [S(DISPUTED)] = "DISPUTED",
    [S(CARRIER_VERIFYING)] = "CARRIER_VERIFYING", [S(ESCALATED)] = "ESCALATED",
    [S(RESOLVED)] = "RESOLVED", [S(CLOSED)] = "CLOSED",
};

/* From each state, the states it may move to. A closed case never moves;
 * a mediator's ruling (from DISPUTED) is final. */
static const uint32_t legal[NSTATES] = {
    [S(OPEN)] = B(AWAITING_EVIDENCE) | B(IN_REVIEW) | B(MANUAL_REVIEW) | B(APPROVED) |
                B(REJECTED) | B(GOODWILL_OFFERED) | B(CARRIER_VERIFYING) | B(ESCALATED) |
                B(RESOLVED) | B(CLOSED),
    [S(AWAITING_EVIDENCE)] = B(IN_REVIEW) | B(MANUAL_REVIEW) | B(APPROVED) | B(REJECTED) |
                             B(GOODWILL_OFFERED) | B(CLOSED),
    [S(IN_REVIEW)] = B(APPROVED) | B(REJECTED) | B(MANUAL_REVIEW) | B(GOODWILL_OFFERED) |
                     B(AWAITING_EVIDENCE) | B(CLOSED),
    [S(MANUAL_REVIEW)] = B(APPROVED) | B(REJECTED) | B(GOODWILL_OFFERED) | B(AWAITING_EVIDENCE) |
                         B(CLOSED),
    [S(GOODWILL_OFFERED)] = B(APPROVED) | B(REFUNDED) | B(MANUAL_REVIEW) | B(CLOSED),
    [S(APPROVED)] = B(AWAITING_RETURN) | B(REFUNDED) | B(EXCHANGED) | B(DISPUTED) | B(CLOSED),
    [S(AWAITING_RETURN)] = B(RETURN_RECEIVED) | B(DISPUTED) | B(CLOSED),
    [S(RETURN_RECEIVED)] = B(INSPECTING) | B(REFUNDED) | B(EXCHANGED) | B(DISPUTED),
    [S(INSPECTING)] = B(REFUNDED) | B(EXCHANGED) | B(REJECTED) | B(DISPUTED),
    [S(REFUNDED)] = B(CLOSED),
    [S(EXCHANGED)] = B(CLOSED),
    [S(REJECTED)] = B(DISPUTED) | B(CLOSED),
    [S(DISPUTED)] = B(APPROVED) | B(REJECTED) | B(REFUNDED) | B(EXCHANGED) | B(CLOSED),
    [S(CARRIER_VERIFYING)] = B(RESOLVED) | B(REFUNDED) | B(ESCALATED) | B(CLOSED),
    [S(ESCALATED)] = B(RESOLVED) | B(REFUNDED) | B(CLOSED),
    [S(RESOLVED)] = B(CLOSED),
    [S(CLOSED)] = 0,
};

const char *as_case_state_name(as_case_state_t s) {
  return (s > 0 && (unsigned)s < NSTATES) ? names[s] : NULL;
}

int as_case_state_parse(const char *name, as_case_state_t *out) {
  for (unsigned i = 1; i < NSTATES; i++)
    if (strcmp(names[i], name) == 0) {
      *out = (as_case_state_t)i;
      return 0;
    }
  return -EINVAL;
}

bool as_case_move_legal(as_case_state_t from, as_case_state_t to) {
  if (!as_case_state_name(from) || !as_case_state_name(to)) return false;
  return (legal[from] >> to) & 1u;
}

int as_case_open(as_tx_t *tx, const as_case_new_t *c, as_case_actor_t actor, const char *why,
                 const char *event_id) {
  const char *state = as_case_state_name(c->state);
  if (!state) return -EINVAL;
  char claimed[24];
  snprintf(claimed, sizeof claimed, "%lld", (long long)c->claimed_minor);
  const char *vals[] = {c->case_id, c->case_number, c->case_type, state, c->order_id, c->buyer_id,
                        c->merchant_id, c->reason, c->route, c->currency, claimed,
                        actor.kind, actor.id, why, event_id};
  PGresult *r = NULL;
  int rc = as_db_query(tx->db,
                       "WITH c AS (INSERT INTO cases.cases (case_id, case_number, case_type, state,"
                       " order_id, buyer_id, merchant_id, reason, route, currency, claimed_minor)"
                       " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                       " ON CONFLICT (case_id) DO NOTHING RETURNING case_id)"
                       " INSERT INTO cases.timeline (case_id, version, from_state, to_state,"
                       " actor_kind, actor_id, reason, event_id)"
                       " SELECT case_id, 1, NULL, $4, $12, $13, $14, $15::uuid FROM c RETURNING 1",
                       15, vals, &r);
  if (rc == 0 && PQntuples(r) == 0) rc = -EEXIST;
  PQclear(r);
  return rc;
}

static int lock_case(as_tx_t *tx, const char *case_id, as_case_state_t *state) {
  PGresult *r = NULL;
  const char *vals[1] = {case_id};
  int rc = as_db_query(tx->db, "SELECT state FROM cases.cases WHERE case_id = $1 FOR UPDATE", 1,
                       vals, &r);
  if (rc == 0 && PQntuples(r) == 0) rc = -ENOENT;
  if (rc == 0 && as_case_state_parse(PQgetvalue(r, 0, 0), state) < 0) rc = -EIO;
  PQclear(r);
  return rc;
}

int as_case_transition(as_tx_t *tx, const char *case_id, as_case_state_t to, as_case_actor_t actor,
                       const char *why, const char *event_id, const char *detail_json,
                       as_case_state_t *from, int64_t *version) {
  as_case_state_t cur = AFTERSALES__V1__CASE_STATE__CASE_STATE_UNSPECIFIED;
  int rc = lock_case(tx, case_id, &cur);
  if (rc < 0) return rc;
  if (from) *from = cur;
  if (!as_case_move_legal(cur, to)) return -EPERM;
  const char *vals[] = {case_id, as_case_state_name(to), as_case_state_name(cur), actor.kind,
                        actor.id, why, event_id, detail_json};
  PGresult *r = NULL;
  rc = as_db_query(tx->db,
                   "WITH u AS (UPDATE cases.cases SET state = $2, version = version + 1,"
                   " updated_at = now() WHERE case_id = $1 RETURNING case_id, version)"
                   " INSERT INTO cases.timeline (case_id, version, from_state, to_state,"
                   " actor_kind, actor_id, reason, event_id, detail)"
                   " SELECT case_id, version, $3, $2, $4, $5, $6, $7::uuid, $8::jsonb FROM u"
                   " RETURNING version",
                   8, vals, &r);
  if (rc == 0 && version) *version = strtoll(PQgetvalue(r, 0, 0), NULL, 10);
  PQclear(r);
  return rc;
}
