/* as_route: a service's tables of what it does with each payload type and
 * each deadline kind, and the runtime's dispatch over them.
 *
 * Payload routes: one row per envelope payload case, with either a batch
 * handler or a message handler. For each batch, the runtime first calls
 * every batch handler once (in the order of its first row) with the
 * batch's fresh messages routed to it, in batch order; then it walks the
 * batch in order and calls the message handler of each fresh message that
 * has one. So bulk work (a projection, the batch's new cases) happens
 * before the per-message events that may depend on it, and the per-message
 * events of one case keep their order. A message a handler marks dead
 * (as_tx_reject) gets no further call. A payload without a row is ignored
 * (someone else's event on a shared topic, or the service's own read back):
 * not claimed in the inbox, since it changes nothing, and counted in
 * as_messages_ignored_total; unless the service refuses unrouted payloads
 * (as_service_t), which dead-letters them (except on its shared topics).
 *
 * Deadline kinds: one row per kind; "hold:*" matches every kind that
 * starts with "hold:", other rows match exactly; the first row that
 * matches fires, with the full kind.
 *
 * Ownership: tables are static; nothing here allocates what it returns. */
#ifndef AS_ROUTE_H
#define AS_ROUTE_H

#include <stddef.h>
#include <stdint.h>

#include "as_tx.h"

/* The number of rows of a static table. */
#define AS_LEN(a) (sizeof(a) / sizeof((a)[0]))

typedef int (*as_batch_fn)(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);
typedef int (*as_msg_fn)(void *state, as_tx_t *tx, as_msg_t *m);

typedef struct as_route {
  Aftersales__V1__Envelope__PayloadCase payload;
  as_batch_fn batch; /* either this ... */
  as_msg_fn one;     /* ... or this */
} as_route_t;

/* Handlers return 0 or an as_db error (which rolls the batch back). */
typedef int (*as_fire_fn)(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                          int64_t due_us);

typedef struct as_deadline_kind {
  const char *kind; /* "review", or a prefix "hold:*" */
  as_fire_fn fire;
} as_deadline_kind_t;

/* The row of payload p, or NULL. */
const as_route_t *as_route_find(const as_route_t *routes, size_t nroutes,
                                Aftersales__V1__Envelope__PayloadCase p);

/* Dispatches msgs[0..n) (the batch's fresh messages) as described above.
 * Returns 0 or the first handler error (no handler is called after it),
 * or -ENOMEM. */
int as_route_batch(const as_route_t *routes, size_t nroutes, void *state, as_tx_t *tx,
                   as_msg_t *const *msgs, size_t n);

/* The first row whose kind matches, or NULL. */
const as_deadline_kind_t *as_route_kind(const as_deadline_kind_t *kinds, size_t n,
                                        const char *kind);

#endif
