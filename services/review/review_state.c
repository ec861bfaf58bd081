/* review_state: review's state at start and on SIGHUP: the return policy in
 * force, from AS_REVIEW_POLICY_FILE or the built-in default. A file that
 * does not parse stops the worker at start and is refused on reload (the
 * policy in force stays), logged and counted either way. */
#include <errno.h>
#include <string.h>

#include "as_log.h"
#include "review.h"

static review_policy_t *load_policy(const review_t *x, char *err, size_t errlen) {
  if (!x->conf->policy_file || !x->conf->policy_file[0])
    return review_policy_parse(review_policy_default, strlen(review_policy_default), err, errlen);
  return review_policy_load(x->conf->policy_file, err, errlen);
}

int review_reload(void *state) {
  review_t *x = state;
  char err[300];
  review_policy_t *p = load_policy(x, err, sizeof err);
  if (!p) {
    as_counter_add(x->reloads_refused, 1);
    AS_ERROR(x->log, "policy refused, the previous one stays in force", AS_F_STR("detail", err),
             AS_F_STR("in_force", review_policy_version(x->policy)));
    return -EINVAL;
  }
  review_policy_free(x->policy);
  x->policy = p;
  as_counter_add(x->reloads_ok, 1);
  AS_INFO(x->log, "policy loaded", AS_F_STR("version", review_policy_version(p)));
  return 0;
}

void review_fini(void *state) {
  review_t *x = state;
  review_policy_free(x->policy);
}

int review_init(as_worker_t *w, const void *conf, void *state) {
  review_t *x = state;
  x->log = as_worker_log(w);
  x->conf = conf;
  char err[300];
  x->policy = load_policy(x, err, sizeof err);
  if (!x->policy) {
    AS_ERROR(x->log, "policy refused", AS_F_STR("detail", err));
    return -EINVAL;
  }
  AS_INFO(x->log, "policy loaded", AS_F_STR("version", review_policy_version(x->policy)));
  return 0;
}
