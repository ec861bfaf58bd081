/* insp_out: what every inspection module shares: an envelope queued on a
 * topic, the task ids of i12 (README "Identifiers") and the check of a
 * message's lines against the units it may name. */
#include <stdio.h>
#include <string.h>

#include "inspection.h"

int insp_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic, const char *key,
                 const char *case_id, const char *order_id, Aftersales__V1__Envelope *env) {
  env->case_id = (char *)(case_id ? case_id : "");
  env->order_id = (char *)(order_id ? order_id : "");
  return as_tx_publish(tx, cause, topic, key, env);
}

const char *insp_units_check(Aftersales__V1__LineRef *const *l, size_t n, const insp_units_t *a,
                             size_t na, const char *what, char *why, size_t whylen) {
  if (n > INSP_MAX_LINES) return as_err_set(why, whylen, "%s: more than 100 lines", what), why;
  for (size_t i = 0; i < n; i++) {
    const char *id = l[i]->line_id;
    if (!as_envelope_id_ok(id))
      return as_err_set(why, whylen, "%s: line id missing or unsafe", what), why;
    for (size_t k = 0; k < i; k++)
      if (strcmp(l[k]->line_id, id) == 0)
        return as_err_set(why, whylen, "%s: line %s named twice", what, id), why;
    size_t j = 0;
    while (j < na && strcmp(a[j].line_id, id) != 0) j++;
    if (j == na)
      return as_err_set(why, whylen, "%s: line %s is not among the units allowed", what, id), why;
    if (l[i]->quantity < 1 || l[i]->quantity > a[j].quantity)
      return as_err_set(why, whylen, "%s: line %s: %d units, allowed 1 to %d", what, id,
                        l[i]->quantity, a[j].quantity),
             why;
  }
  return NULL;
}

bool insp_text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 && s[i] != '\n' && s[i] != '\t') return false;
  return true;
}
