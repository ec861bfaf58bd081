/* as_deadline: durable timers (SLA clocks, evidence and return deadlines)
 * in the service's deadlines table.
 *
 * A deadline is (case id, kind) -> due time; setting it again moves it.
 * The worker's scanner takes due rows with FOR UPDATE SKIP LOCKED in a
 * transaction, fires each through the service's deadline kinds (as_route)
 * and marks them fired in the same transaction: several instances share the work, none
 * fires a deadline twice, and a crash before COMMIT fires it again later.
 *
 * Ownership: nothing allocated is returned. */
#ifndef AS_DEADLINE_H
#define AS_DEADLINE_H

#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "as_tx.h"

/* Sets (or moves) the deadline kind of case_id to due_us, re-arming it if it
 * had fired or was cancelled. Returns 0 or an as_db error. */
AS_MUST_CHECK int as_deadline_set(as_tx_t *tx, const char *case_id, const char *kind,
                                  int64_t due_us);

/* The bulk form: sets (or moves) n deadlines with one statement. The same
 * (case id, kind) must not appear twice in one call. Returns 0 or an as_db
 * error. */
AS_MUST_CHECK int as_deadline_set_many(as_tx_t *tx, const char *const *case_ids,
                                       const char *const *kinds, const int64_t *due_us, size_t n);

/* Cancels it; returns 0 or an as_db error (a missing deadline is no error). */
AS_MUST_CHECK int as_deadline_cancel(as_tx_t *tx, const char *case_id, const char *kind);

/* The bulk form: cancels n deadlines with one statement (missing ones are
 * no error; a pair may repeat). Returns 0 or an as_db error. */
AS_MUST_CHECK int as_deadline_cancel_many(as_tx_t *tx, const char *const *case_ids,
                                          const char *const *kinds, size_t n);

typedef int (*as_deadline_fire_cb)(void *arg, as_tx_t *tx, const char *case_id, const char *kind,
                                   int64_t due_us);

/* Takes at most limit due rows (due_at <= now), calls fire for each and marks
 * them fired, all in the caller's open transaction. Returns the number fired
 * (>= 0) or an as_db error. */
AS_MUST_CHECK int as_deadline_scan(as_tx_t *tx, int limit, as_deadline_fire_cb fire, void *arg);

#endif
