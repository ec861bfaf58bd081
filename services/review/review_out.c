/* review_out: how every review module puts an event on the wire: an
 * envelope queued on a topic keyed by the case id. Kept apart from the
 * modules that use it (apply, events, record, money, timers), so none of
 * those depends on another for its plumbing. */
#include "review.h"

int review_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic, const char *case_id,
                   const char *order_id, Aftersales__V1__Envelope *env) {
  env->case_id = (char *)case_id;
  env->order_id = (char *)(order_id ? order_id : "");
  return as_tx_publish(tx, cause, topic, case_id, env);
}
