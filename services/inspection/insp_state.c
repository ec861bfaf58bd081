/* insp_state: the inspection worker's state at start and on SIGHUP: the
 * standards in force, from AS_INSPECTION_STANDARDS_FILE or the built-in
 * default. A file that does not parse stops the worker at start and is
 * refused on reload (the standards in force stay), logged and counted. */
#include <errno.h>
#include <string.h>

#include "as_log.h"
#include "inspection.h"

static insp_standards_t *load(const insp_t *x, char *err, size_t errlen) {
  const char *f = x->conf->standards_file;
  if (!f || !f[0])
    return insp_standards_parse(insp_standards_default, strlen(insp_standards_default), err,
                                errlen);
  return insp_standards_load(f, err, errlen);
}

int insp_reload(void *state) {
  insp_t *x = state;
  char err[512];
  insp_standards_t *s = load(x, err, sizeof err);
  if (!s) {
    as_counter_add(x->reloads_refused, 1);
    AS_ERROR(x->log, "standards refused, the previous ones stay in force", AS_F_STR("detail", err),
             AS_F_STR("in_force", insp_standards_version(x->standards)));
    return -EINVAL;
  }
  insp_standards_free(x->standards);
  x->standards = s;
  as_counter_add(x->reloads_ok, 1);
  AS_INFO(x->log, "standards loaded", AS_F_STR("version", insp_standards_version(s)));
  return 0;
}

void insp_fini(void *state) {
  insp_t *x = state;
  insp_standards_free(x->standards);
}

int insp_init(as_worker_t *w, const void *conf, void *state) {
  insp_t *x = state;
  x->log = as_worker_log(w);
  x->conf = conf;
  char err[512];
  x->standards = load(x, err, sizeof err);
  if (!x->standards) {
    AS_ERROR(x->log, "standards refused", AS_F_STR("detail", err));
    return -EINVAL;
  }
  AS_INFO(x->log, "standards loaded", AS_F_STR("version", insp_standards_version(x->standards)));
  return 0;
}
