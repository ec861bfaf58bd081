/* as_case: the shared case tables and the one transition function.
 *
 * Every change of a case's state goes through as_case_transition_many (or
 * its one-move form as_case_transition): it locks the case rows (two workers
 * touching one case serialise on it), checks each move against the
 * legal-move table, bumps the version and appends a timeline row naming the
 * actor, the reason and the causing event. Every case is born through
 * as_case_open_many (or as_case_open), the one place that writes a case's
 * first timeline row. The timeline is append-only (a trigger refuses UPDATE
 * and DELETE). The bulk forms cost a fixed number of statements however
 * many cases they touch: a worker calls them once per batch.
 *
 * Every timeline row written (a birth or a move) is also queued with
 * as_tx_publish as a CaseStateChanged on aftersales.cases.v1, keyed by the
 * case id, so it reaches the outbox in the caller's transaction and no
 * worker needs code of its own for it: the birth goes from
 * CASE_STATE_UNSPECIFIED to the first state at version 1, a move from the
 * state before it, each with the timeline row's version, actor and reason.
 * Its event id is the name-based UUID (as_uuid_v5, namespace
 * "aftersales.case_state_changed", name "<case_id>|<version>"), so a
 * redelivered batch or a consumer recomputes the same id. Queueing costs no
 * round trip: the outbox rows go with the batch's other events in
 * as_tx_flush's one bulk INSERT.
 *
 * Ownership: all string arguments (also those inside the structs passed in)
 * are borrowed for the call; nothing returned needs freeing. */
#ifndef AS_CASE_H
#define AS_CASE_H

#include <stdbool.h>
#include <stdint.h>

#include "as_err.h"
#include "as_tx.h"
#include "proto/common.pb-c.h"

typedef Aftersales__V1__CaseState as_case_state_t;

/* "OPEN", "AWAITING_EVIDENCE", ...; NULL for values outside the enum. */
const char *as_case_state_name(as_case_state_t s);
/* Returns 0 or -EINVAL. */
AS_MUST_CHECK int as_case_state_parse(const char *name, as_case_state_t *out);
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
  /* What was paid for the order (cases.cases.paid_minor, paid_currency,
   * shipping_paid_minor): the cap review's ledger is checked against.
   * has_paid false leaves them NULL (nothing paid yet: complaints). */
  bool has_paid;
  int64_t paid_minor, shipping_paid_minor;
  const char *paid_currency;
} as_case_new_t;

#define AS_CASE_NUMBER_MAX 32 /* "AS-YYYYMMDD-" + up to 19 digits + NUL */

/* One case to open, and what became of it. */
typedef struct as_case_opening {
  as_case_new_t c;       /* c.case_number NULL: AS-YYYYMMDD-NNNNNNN from cases.case_number_seq */
  as_case_actor_t actor; /* who opened it: the first timeline row's actor */
  const char *why;       /* the first timeline row's reason */
  const char *event_id;  /* the causing event (a UUID) or NULL */
  const as_msg_t *cause; /* borrowed, may be NULL: the message being handled, whose trace the
                            CaseStateChanged carries on; NULL: causation id event_id, a new trace */
  /* filled by the call */
  bool opened;                          /* inserted by this call */
  char case_number[AS_CASE_NUMBER_MAX]; /* the number given or drawn, if opened; else "" */
} as_case_opening_t;

/* Inserts o[0..n) at version 1, each with its first timeline row, with one
 * statement, in case-id order (two instances inserting the same ids lock
 * them in one order), and queues each opened case's CaseStateChanged
 * (UNSPECIFIED -> its state, version 1) in o's order. A case id that already
 * exists, or that appeared earlier in o, is left alone: opened false and
 * nothing written or queued for it (the first occurrence in o wins).
 * Returns 0, -EINVAL if some o[i] has no case id or a state outside the enum
 * (nothing written), -ENOMEM, or an as_db error (e.g. a case number already
 * taken: -EIO, sqlstate 23505); after an error the caller's transaction
 * must roll back (as the runtime does, dropping what was queued). */
AS_MUST_CHECK int as_case_open_many(as_tx_t *tx, as_case_opening_t *o, size_t n);

/* One case through as_case_open_many; c->case_number may be NULL (drawn,
 * not reported). Returns 0, -EEXIST if the case id already exists (nothing
 * written), -EINVAL or an as_db error. */
AS_MUST_CHECK int as_case_open(as_tx_t *tx, const as_case_new_t *c, as_case_actor_t actor,
                               const char *why, const char *event_id);

typedef struct as_case_move {
  const char *case_id; /* borrowed */
  as_case_state_t to;
  uint32_t from_mask; /* 0: any state the legal-move table allows; else also require (1u << from) &
                         from_mask */
  as_case_actor_t actor;
  const char *why, *event_id, *detail_json; /* borrowed; event_id and detail_json may be NULL */
  const as_msg_t *cause;                    /* borrowed, may be NULL: as in as_case_opening_t */
  /* filled by the call */
  int rc; /* 0 moved, -ENOENT no such case, -EPERM illegal move or state not in from_mask */
  as_case_state_t from; /* state before this move */
  int64_t version;      /* version after this move */
} as_case_move_t;

/* Bit of state s in as_case_move_t.from_mask. */
#define AS_CASE_BIT(s) (1u << (s))

/* Applies m[0..n) in order in the caller's transaction: locks the distinct
 * case rows FOR UPDATE in case-id order (no deadlock between instances),
 * checks each move against the state left by the earlier moves of the same
 * batch (the same case may appear several times: OPEN->APPROVED then
 * APPROVED->AWAITING_RETURN), then writes each case's final state and
 * version with one bulk UPDATE and every timeline row with one bulk INSERT,
 * and queues one CaseStateChanged per move made, in m's order (so one
 * case's changes reach its partition in version order). A refused move
 * writes and queues nothing and does not stop the others. Returns 0
 * (per-move results in m[i].rc) or an as_db error, -ENOMEM or -EINVAL from
 * queueing (then the caller's transaction must roll back).
 *
 * Per move: rc 0 with from and version (the case's version after it);
 * -EPERM with from (where the case stood) and version (its current one,
 * unchanged); -ENOENT with from UNSPECIFIED and version 0. The call also
 * returns -EINVAL (nothing done) if a case_id is NULL, or -ENOMEM. A
 * malformed detail_json or event_id fails the statement (-EIO) and with it
 * the caller's transaction. Three statements however many moves (one if
 * none is legal, none if n is 0). */
AS_MUST_CHECK int as_case_transition_many(as_tx_t *tx, as_case_move_t *m, size_t n);

/* One move through as_case_transition_many. Returns 0 with *from and
 * *version (new) filled, -ENOENT (no such case; nothing filled), -EPERM
 * (illegal move; *from filled, nothing written) or an as_db error.
 * detail_json is NULL or a JSON object for the timeline; from and version
 * may be NULL. */
AS_MUST_CHECK int as_case_transition(as_tx_t *tx, const char *case_id, as_case_state_t to,
                                     as_case_actor_t actor, const char *why, const char *event_id,
                                     const char *detail_json, as_case_state_t *from,
                                     int64_t *version);

/* Appends a timeline row that changes no state (from and to are the case's
 * state) under the case's row lock, bumping its version, and queues its
 * CaseStateChanged (from == to): an event on a case its state does not
 * show, e.g. a closed case compensated (a new refund, the case not
 * reopened). cause may be NULL; detail_json NULL or a JSON object. Returns
 * 0 (*version, if not NULL, the case's new version), -ENOENT (no such
 * case; nothing written), -EINVAL, or an as_db error. */
AS_MUST_CHECK int as_case_note(as_tx_t *tx, const char *case_id, as_case_actor_t actor,
                               const char *why, const as_msg_t *cause, const char *detail_json,
                               int64_t *version);

#endif
