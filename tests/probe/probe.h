/* probe: the test worker's domain, wired into the runtime by main.c.
 *
 * Ownership: the probe keeps no state; everything a batch allocates is
 * released before the handler returns. */
#ifndef PROBE_H
#define PROBE_H

#include "as_worker.h"

/* Counts the batch's SyntheticProbe events per probe id (one statement)
 * and echoes each valid one; refuses an invalid one. Returns 0 or an
 * as_db error. */
int probe_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

#endif
