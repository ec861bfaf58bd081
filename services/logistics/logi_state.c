/* logi_state: the logistics worker's settings that are more than a number:
 * the outcome rule table (AS_LOGISTICS_OUTCOME_RULES, "finding=remedy"
 * pairs) and the per-carrier stall hours (AS_LOGISTICS_STALL_HOURS_BY_CARRIER,
 * "carrier=hours" pairs), parsed and checked at start: a bad one stops the
 * worker (exit 2) before any connection. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "as_log.h"
#include "logistics.h"

#define F(x) AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_##x

static const struct {
  const char *name;
  int finding;
} findings[] = {
    {"delivered_confirmed", F(DELIVERED_CONFIRMED)},
    {"redelivery", F(REDELIVERY)},
    {"lost", F(LOST)},
    {"in_transit", F(IN_TRANSIT)},
};

static const char *const remedies[] = {"", "none", "refund", "reship", "preferred", "wait"};

static int lookup(const char *s, size_t n, const char *const *names, size_t nn) {
  for (size_t i = 1; i < nn; i++)
    if (strlen(names[i]) == n && strncmp(names[i], s, n) == 0) return (int)i;
  return -1;
}

static int finding_of(const char *s, size_t n) {
  for (size_t i = 0; i < AS_LEN(findings); i++)
    if (strlen(findings[i].name) == n && strncmp(findings[i].name, s, n) == 0)
      return findings[i].finding;
  return -1;
}

int logi_rules_parse(const char *s, logi_remedy_t rule[LOGI_FINDINGS], char *err, size_t errlen) {
  rule[F(DELIVERED_CONFIRMED)] = LOGI_REMEDY_NONE;
  rule[F(REDELIVERY)] = LOGI_REMEDY_NONE;
  rule[F(LOST)] = LOGI_REMEDY_PREFERRED;
  rule[F(IN_TRANSIT)] = LOGI_REMEDY_WAIT;
  while (s && *s) {
    const char *end = strchr(s, ','), *eq = strchr(s, '=');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    if (!eq || eq >= s + len)
      return as_err_set(err, errlen, "outcome rule \"%.*s\": want finding=remedy", (int)len, s),
             -EINVAL;
    int f = finding_of(s, (size_t)(eq - s));
    int r = lookup(eq + 1, len - (size_t)(eq - s) - 1, remedies, AS_LEN(remedies));
    if (f < 0)
      return as_err_set(err, errlen, "outcome rule \"%.*s\": unknown finding", (int)len, s),
             -EINVAL;
    if (r < 0)
      return as_err_set(err, errlen,
                        "outcome rule \"%.*s\": remedy must be none, refund, reship, preferred "
                        "or wait",
                        (int)len, s),
             -EINVAL;
    rule[f] = (logi_remedy_t)r;
    s = end ? end + 1 : s + len;
  }
  return 0;
}

static int stall_parse(logi_t *x, const char *s, char *err, size_t errlen) {
  while (s && *s) {
    const char *end = strchr(s, ','), *eq = strchr(s, '=');
    size_t len = end ? (size_t)(end - s) : strlen(s);
    char *num_end = NULL;
    long long h = eq && eq < s + len ? strtoll(eq + 1, &num_end, 10) : 0;
    size_t clen = eq ? (size_t)(eq - s) : 0;
    if (!eq || eq >= s + len || num_end != s + len || h < 1 || h > 8760 || clen < 1 ||
        clen >= sizeof x->stall[0].carrier || x->nstall == LOGI_MAX_CARRIERS)
      return as_err_set(err, errlen,
                        "stall hours \"%.*s\": want carrier=hours (1..8760), at most 16 carriers",
                        (int)len, s),
             -EINVAL;
    memcpy(x->stall[x->nstall].carrier, s, clen);
    x->stall[x->nstall].carrier[clen] = '\0';
    x->stall[x->nstall++].hours = h;
    s = end ? end + 1 : s + len;
  }
  return 0;
}

int64_t logi_stall_us(const logi_t *x, const char *carrier) {
  for (size_t i = 0; i < x->nstall; i++)
    if (strcasecmp(x->stall[i].carrier, carrier) == 0) return x->stall[i].hours * LOGI_HOUR_US;
  return x->conf->stall_hours * LOGI_HOUR_US;
}

int logi_init(as_worker_t *w, const void *conf, void *state) {
  logi_t *x = state;
  x->log = as_worker_log(w);
  x->conf = conf;
  char err[256];
  if (logi_rules_parse(x->conf->rules, x->rule, err, sizeof err) != 0 ||
      stall_parse(x, x->conf->stall_by_carrier, err, sizeof err) != 0) {
    AS_ERROR(x->log, "bad logistics setting", AS_F_STR("detail", err));
    return -EINVAL;
  }
  return 0;
}
