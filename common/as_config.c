/* as_config: loads a service's configuration table from the environment,
 * prints --help from the same table, and passes AS_RDKAFKA_* variables
 * through to librdkafka. Every value, defaults included, goes through the
 * same parser and bounds check, so a typo in the table fails as loudly as a
 * typo in a deployment. An empty variable counts as unset: compose files and
 * `${VAR}` substitutions produce empty strings for "not given", and taking
 * those literally would start a worker with an empty DSN.
 * An AS_CFG_INT row with min == max == 0 is unbounded (any long long); an
 * AS_CFG_STR row's min, when > 0, is a minimum length in bytes. */
#include "as_config.h"

#include "as_err.h"
#include "as_int.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

enum { SHOW_MAX = 64 };

static const char RDKAFKA_PREFIX[] = "AS_RDKAFKA_";

/* A bad value as it may be echoed in an error: at most SHOW_MAX bytes, with
 * anything not printable ASCII replaced, so an error line stays one line. */
static void show_value(char out[SHOW_MAX + 4], const char *v) {
  size_t i;

  for (i = 0; i < SHOW_MAX && v[i] != '\0'; i++) out[i] = v[i] >= 0x20 && v[i] < 0x7F ? v[i] : '?';
  strcpy(out + i, v[i] != '\0' ? "..." : "");
}

static bool int_bounded(const as_cfg_param_t *p) {
  return p->min != 0 || p->max != 0;
}

static int parse_int(const as_cfg_param_t *p, const char *v, long long *out, char *err,
                     size_t errlen) {
  char shown[SHOW_MAX + 4];
  if (as_int_parse(v, AS_INT_SIGNED, int_bounded(p) ? p->min : LLONG_MIN,
                   int_bounded(p) ? p->max : LLONG_MAX, out) == 0)
    return 0;
  show_value(shown, v);
  if (int_bounded(p))
    as_err_set(err, errlen, "%s: must be an integer between %lld and %lld, got \"%s\"", p->name,
               p->min, p->max, shown);
  else
    as_err_set(err, errlen, "%s: must be an integer, got \"%s\"", p->name, shown);
  return -EINVAL;
}

static int parse_bool(const as_cfg_param_t *p, const char *v, bool *out, char *err, size_t errlen) {
  static const char *const yes[] = {"1", "true", "yes", "on"};
  static const char *const no[] = {"0", "false", "no", "off"};
  char shown[SHOW_MAX + 4];

  for (size_t i = 0; i < sizeof yes / sizeof yes[0]; i++) {
    if (strcasecmp(v, yes[i]) == 0 || strcasecmp(v, no[i]) == 0) {
      *out = strcasecmp(v, yes[i]) == 0;
      return 0;
    }
  }
  show_value(shown, v);
  as_err_set(err, errlen, "%s: must be one of 1/0/true/false/yes/no/on/off, got \"%s\"", p->name,
             shown);
  return -EINVAL;
}

/* String values are not echoed: they may be DSNs with passwords. */
static int check_str(const as_cfg_param_t *p, const char *v, char *err, size_t errlen) {
  size_t len = strlen(v);

  if (p->max > 0 && len > (unsigned long long)p->max) {
    as_err_set(err, errlen, "%s: must be at most %lld bytes, got %zu", p->name, p->max, len);
    return -EINVAL;
  }
  if (p->min > 0 && len < (unsigned long long)p->min) {
    as_err_set(err, errlen, "%s: must be at least %lld bytes, got %zu", p->name, p->min, len);
    return -EINVAL;
  }
  for (size_t i = 0; i < len; i++) {
    if ((unsigned char)v[i] < 0x20 || v[i] == 0x7F) {
      as_err_set(err, errlen, "%s: must not contain control characters (byte %zu is 0x%02x)",
                 p->name, i, (unsigned char)v[i]);
      return -EINVAL;
    }
  }
  return 0;
}

static int load_one(const as_cfg_param_t *p, char *base, char *err, size_t errlen) {
  const char *v = getenv(p->name);
  long long n;
  bool b;
  int rc;

  if (v == NULL || v[0] == '\0') v = p->def;
  if (v == NULL) {
    as_err_set(err, errlen, "%s: required but not set", p->name);
    return -EINVAL;
  }
  switch (p->type) {
    case AS_CFG_INT:
      if ((rc = parse_int(p, v, &n, err, errlen)) == 0) memcpy(base + p->offset, &n, sizeof n);
      return rc;
    case AS_CFG_BOOL:
      if ((rc = parse_bool(p, v, &b, err, errlen)) == 0) memcpy(base + p->offset, &b, sizeof b);
      return rc;
    case AS_CFG_STR:
      if ((rc = check_str(p, v, err, errlen)) == 0) memcpy(base + p->offset, &v, sizeof v);
      return rc;
  }
  as_err_set(err, errlen, "%s: unknown type %d in the configuration table", p->name, (int)p->type);
  return -EINVAL;
}

int as_config_load(const as_cfg_param_t *table, size_t n, void *out, char *err, size_t errlen) {
  as_err_set(err, errlen, "%s", "");
  for (size_t i = 0; i < n; i++) {
    int rc = load_one(&table[i], out, err, errlen);

    if (rc != 0) return rc;
  }
  return 0;
}

/* "(int, default 500, 1..10000)" and the like. */
static void help_head(FILE *f, const as_cfg_param_t *p) {
  static const char *const types[] = {
      [AS_CFG_STR] = "string", [AS_CFG_INT] = "int", [AS_CFG_BOOL] = "bool"};
  const char *type = (unsigned)p->type < 3 ? types[p->type] : "?";

  fprintf(f, "  %s (%s, ", p->name, type);
  if (p->def == NULL)
    fputs("required", f);
  else if (p->type == AS_CFG_STR)
    fprintf(f, "default \"%s\"", p->def);
  else
    fprintf(f, "default %s", p->def);
  if (p->type == AS_CFG_INT && int_bounded(p)) fprintf(f, ", %lld..%lld", p->min, p->max);
  if (p->type == AS_CFG_STR && p->min > 0 && p->max > 0)
    fprintf(f, ", %lld..%lld bytes", p->min, p->max);
  else if (p->type == AS_CFG_STR && p->max > 0)
    fprintf(f, ", at most %lld bytes", p->max);
  else if (p->type == AS_CFG_STR && p->min > 0)
    fprintf(f, ", at least %lld bytes", p->min);
  fputs(")\n", f);
}

/* Help text indented under its variable, line by line. */
static void help_body(FILE *f, const char *help) {
  while (help != NULL && *help != '\0') {
    size_t n = strcspn(help, "\n");

    fprintf(f, "      %.*s\n", (int)n, help);
    help += n + (help[n] == '\n');
  }
}

void as_config_help(FILE *f, const char *prog, const char *summary,
                    const as_cfg_param_t *const *tables, const size_t *sizes, size_t ntables) {
  fprintf(f, "usage: %s\n", prog != NULL ? prog : "?");
  if (summary != NULL && *summary != '\0') fprintf(f, "%s\n", summary);
  fputs("\nConfiguration comes from environment variables (empty counts as unset):\n", f);
  for (size_t t = 0; t < ntables; t++) {
    for (size_t i = 0; i < sizes[t]; i++) {
      help_head(f, &tables[t][i]);
      help_body(f, tables[t][i].help);
    }
  }
  fputs(
      "  AS_RDKAFKA_<PROP>, AS_RDKAFKA_CONSUMER_<PROP>, AS_RDKAFKA_PRODUCER_<PROP>\n"
      "      Passed to librdkafka as <prop>, lower case with '_' -> '.': to every\n"
      "      client, to the consumer only, or to the producers only (the scoped\n"
      "      value wins), e.g. AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS=6000 sets\n"
      "      session.timeout.ms=6000 on the consumer.\n",
      f);
}

/* Maps "SESSION_TIMEOUT_MS" (up to '=') to "session.timeout.ms". Refuses
 * anything but [A-Z0-9] words joined by single '_', since the result would
 * not be a librdkafka property name. */
static int map_prop(const char *name, const char *eq, char *prop, size_t cap) {
  size_t n = (size_t)(eq - name);

  if (n == 0 || n >= cap || name[0] == '_' || name[n - 1] == '_') return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    char c = name[i];

    if (c == '_' && name[i + 1] == '_') return -EINVAL;
    if (c == '_')
      prop[i] = '.';
    else if (c >= 'A' && c <= 'Z')
      prop[i] = (char)(c - 'A' + 'a');
    else if (c >= '0' && c <= '9')
      prop[i] = c;
    else
      return -EINVAL;
  }
  prop[n] = '\0';
  return 0;
}

/* The scope a variable's name (after AS_RDKAFKA_) belongs to: "CONSUMER_"
 * or "PRODUCER_" names a scoped property, anything else a shared one. */
static const char *scope_of(const char *name) {
  static const char *const scopes[] = {AS_RDKAFKA_CONSUMER, AS_RDKAFKA_PRODUCER};

  for (size_t i = 0; i < sizeof scopes / sizeof scopes[0]; i++)
    if (strncmp(name, scopes[i], strlen(scopes[i])) == 0) return scopes[i];
  return NULL;
}

/* One pass over the environment: shared variables (scope NULL) or those of
 * one scope. */
static int each_in_scope(int (*set)(void *, const char *, const char *, char *, size_t), void *arg,
                         const char *scope, char *err, size_t errlen) {
  const size_t plen = sizeof RDKAFKA_PREFIX - 1;
  char prop[256], shown[SHOW_MAX + 4];

  for (char **e = environ; e != NULL && *e != NULL; e++) {
    const char *eq = strchr(*e, '='), *name = *e + plen, *in = NULL;
    int rc;

    if (strncmp(*e, RDKAFKA_PREFIX, plen) != 0 || eq == NULL) continue;
    in = scope_of(name);
    if ((in == NULL) != (scope == NULL) || (in != NULL && strcmp(in, scope) != 0)) continue;
    if (in != NULL) name += strlen(in);
    if (map_prop(name, eq, prop, sizeof prop) != 0) {
      show_value(shown, *e);
      shown[strcspn(shown, "=")] = '\0';
      as_err_set(err, errlen,
                 "%s: after %s%s only A-Z, 0-9 and single '_' between words are allowed", shown,
                 RDKAFKA_PREFIX, in != NULL ? in : "");
      return -EINVAL;
    }
    if ((rc = set(arg, prop, eq + 1, err, errlen)) != 0) return rc;
  }
  return 0;
}

int as_config_each_rdkafka(int (*set)(void *arg, const char *prop, const char *value, char *err,
                                      size_t errlen),
                           void *arg, const char *scope, char *err, size_t errlen) {
  int rc = each_in_scope(set, arg, NULL, err, errlen);

  return rc != 0 || scope == NULL ? rc : each_in_scope(set, arg, scope, err, errlen);
}

bool as_config_rdkafka_given(const char *scope, const char *name) {
  char var[160];

  snprintf(var, sizeof var, "%s%s", RDKAFKA_PREFIX, name);
  if (getenv(var) != NULL) return true;
  snprintf(var, sizeof var, "%s%s%s", RDKAFKA_PREFIX, scope, name);
  return getenv(var) != NULL;
}
