/* as_case: the shared case tables and the one transition function.
 *
 * Every change of a case's state goes through as_case_transition: it locks
 * the case row (two workers touching one case serialise on it), checks the
 * move against the legal-move table, bumps the version and appends a
 * timeline row naming the actor, the reason and the causing event. The
 * timeline is append-only (a trigger refuses UPDATE and DELETE).
 *
 * Ownership: all string arguments are borrowed for the call. */
#ifndef AS_CASE_H
#define AS_CASE_H

#include <stdbool.h>
#include <stdint.h>

#include "as_tx.h"
#include "proto/common.pb-c.h"

typedef Aftersales__V1__CaseState as_case_state_t;

/* "OPEN", "AWAITING_EVIDENCE", ...; NULL for values outside the enum. */
const char *as_case_state_name(as_case_state_t s);
/* Returns 0 or -EINVAL. */
int as_case_state_parse(const char *name, as_case_state_t *out);
bool as_case_move_legal(as_case_state_t from, as_case_state_t to);

typedef struct as_case_actor {
  const char *kind; /* "system", "buyer", "agent", "carrier", ... */
  const char *id;
} as_case_actor_t;

typedef struct as_case_new {
  const char *case_id, *case_number, *case_type, *order_id, *buyer_id, *merchant_id;
  const char *reason, *route, *currency; /* currency may be NULL */
  int64_t claimed_minor;
  as_case_state_t state;
} as_case_new_t;

/* Inserts the case at version 1 with its first timeline row. Returns 0,
 * -EEXIST if the case id already exists (nothing written), or an as_db error. */
int as_case_open(as_tx_t *tx, const as_case_new_t *c, as_case_actor_t actor, const char *why,
                 const char *event_id);

/* Moves case_id to `to`. Returns 0 with *from and *version (new) filled,
 * -ENOENT (no such case), -EPERM (illegal move; nothing written) or an
 * as_db error. detail_json is NULL or a JSON object for the timeline. */
int as_case_transition(as_tx_t *tx, const char *case_id, as_case_state_t to, as_case_actor_t actor,
                       const char *why, const char *event_id, const char *detail_json,
                       as_case_state_t *from, int64_t *version);

#endif
