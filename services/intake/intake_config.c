/* intake_config: intake's state at start, and the complaint routing map,
 * AS_INTAKE_COMPLAINT_ROUTES.
 *
 * "SERVICE_ATTITUDE=customer_care,CASE_HANDLING=quality_assurance:48,..."
 * maps every complaint type to a department, optionally with its own
 * resolution deadline in hours (else AS_INTAKE_COMPLAINT_HOURS). It is
 * checked completely at start: a worker never runs with a complaint type
 * that routes nowhere. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_enum.h"
#include "intake.h"

#define TYPES (&aftersales__v1__complaint_type__descriptor)

static int type_of(const char *name, size_t len) {
  int t;
  return as_enum_value(TYPES, name, len, false, &t) == 0 && t < INTAKE_NCOMPLAINT ? t : -1;
}

static bool dept_ok(const char *s, size_t len) {
  if (len == 0 || len >= 48) return false;
  for (size_t i = 0; i < len; i++)
    if (!strchr("abcdefghijklmnopqrstuvwxyz0123456789_-", s[i])) return false;
  return true;
}

/* One "TYPE=department[:hours]" item of len bytes. */
static int parse_item(intake_t *x, const char *item, size_t len, char *err, size_t errlen) {
  const char *eq = memchr(item, '=', len);
  int t = eq ? type_of(item, (size_t)(eq - item)) : -1;
  if (t < 0) {
    snprintf(err, errlen, "AS_INTAKE_COMPLAINT_ROUTES: \"%.*s\" is not TYPE=department", (int)len,
             item);
    return -EINVAL;
  }
  const char *dept = eq + 1, *end = item + len;
  const char *colon = memchr(dept, ':', (size_t)(end - dept));
  size_t dlen = (size_t)((colon ? colon : end) - dept);
  long long hours = x->conf->complaint_hours;
  if (colon) {
    char *stop = NULL;
    hours = strtoll(colon + 1, &stop, 10);
    if (stop != end || hours < 1 || hours > 8760) dlen = 0;
  }
  if (!dept_ok(dept, dlen)) {
    snprintf(err, errlen, "AS_INTAKE_COMPLAINT_ROUTES: bad department or hours for %s",
             as_enum_name(TYPES, t));
    return -EINVAL;
  }
  snprintf(x->dept[t], sizeof x->dept[t], "%.*s", (int)dlen, dept);
  x->dept_hours[t] = hours;
  return 0;
}

int intake_config_routes(intake_t *x, const char *spec, char *err, size_t errlen) {
  memset(x->dept, 0, sizeof x->dept);
  for (const char *p = spec; *p;) {
    size_t len = strcspn(p, ",");
    if (len > 0 && parse_item(x, p, len, err, errlen) < 0) return -EINVAL;
    p += len + (p[len] == ',');
  }
  for (int t = 1; t < INTAKE_NCOMPLAINT; t++)
    if (!x->dept[t][0]) {
      snprintf(err, errlen, "AS_INTAKE_COMPLAINT_ROUTES: no department for %s",
               as_enum_name(TYPES, t));
      return -EINVAL;
    }
  return 0;
}

int intake_init(as_worker_t *w, const void *conf, void *state) {
  intake_t *x = state;
  x->w = w;
  x->log = as_worker_log(w);
  x->conf = conf;
  char err[200];
  if (intake_config_routes(x, x->conf->complaint_routes, err, sizeof err) < 0) {
    AS_ERROR(x->log, "bad configuration", AS_F_STR("detail", err));
    return -EINVAL;
  }
  return 0;
}
