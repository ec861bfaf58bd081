/* as_route: dispatch of a batch over a service's payload routes, and of a
 * deadline over its kinds (see as_route.h). */
#include "as_route.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const as_route_t *as_route_find(const as_route_t *routes, size_t nroutes,
                                Aftersales__V1__Envelope__PayloadCase p) {
  for (size_t i = 0; i < nroutes; i++)
    if (routes[i].payload == p) return &routes[i];
  return NULL;
}

/* True if an earlier row has the same batch handler (it was called). */
static bool seen_before(const as_route_t *routes, size_t at) {
  for (size_t i = 0; i < at; i++)
    if (routes[i].batch == routes[at].batch) return true;
  return false;
}

/* The batch's fresh messages routed to fn, into sel; returns how many. */
static size_t select_for(const as_route_t *routes, size_t nroutes, as_batch_fn fn,
                         as_msg_t *const *msgs, size_t n, as_msg_t **sel) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (msgs[i]->state != AS_MSG_NEW) continue;
    const as_route_t *r = as_route_find(routes, nroutes, msgs[i]->env->payload_case);
    if (r && r->batch == fn) sel[k++] = msgs[i];
  }
  return k;
}

int as_route_batch(const as_route_t *routes, size_t nroutes, void *state, as_tx_t *tx,
                   as_msg_t *const *msgs, size_t n) {
  as_msg_t **sel = malloc(sizeof *sel * (n ? n : 1));
  if (!sel) return -ENOMEM;
  int rc = 0;
  for (size_t r = 0; rc == 0 && r < nroutes; r++) {
    if (!routes[r].batch || seen_before(routes, r)) continue;
    size_t k = select_for(routes, nroutes, routes[r].batch, msgs, n, sel);
    if (k > 0) rc = routes[r].batch(state, tx, sel, k);
  }
  free(sel);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (msgs[i]->state != AS_MSG_NEW) continue;
    const as_route_t *r = as_route_find(routes, nroutes, msgs[i]->env->payload_case);
    if (r && r->one) rc = r->one(state, tx, msgs[i]);
  }
  return rc;
}

static bool kind_matches(const char *row, const char *kind) {
  size_t len = strlen(row);
  if (len > 0 && row[len - 1] == '*') return strncmp(row, kind, len - 1) == 0;
  return strcmp(row, kind) == 0;
}

const as_deadline_kind_t *as_route_kind(const as_deadline_kind_t *kinds, size_t n,
                                        const char *kind) {
  for (size_t i = 0; i < n; i++)
    if (kind_matches(kinds[i].kind, kind)) return &kinds[i];
  return NULL;
}
