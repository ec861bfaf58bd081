/* as_config: configuration from environment variables, one table per service.
 *
 * Every variable has the prefix AS_. A table row gives the name, type,
 * default, bounds and help; as_config_load fills a caller struct at the given
 * offsets and refuses (with a message naming the variable) anything out of
 * bounds or malformed, so a worker never starts half-configured.
 * Variables named AS_RDKAFKA_<PROP> are passed through to librdkafka as
 * <prop> lower-cased with '_' -> '.', e.g. AS_RDKAFKA_SOCKET_TIMEOUT_MS=6000
 * becomes socket.timeout.ms=6000, for every client; AS_RDKAFKA_CONSUMER_<PROP>
 * and AS_RDKAFKA_PRODUCER_<PROP> reach only the consumer or only the
 * producers, so a consumer property (session.timeout.ms) never reaches a
 * producer, which would warn that it ignores it.
 *
 * Ownership: string values are borrowed from the process environment (or
 * the table's default literal) and stay valid as long as the environment is
 * not modified. */
#ifndef AS_CONFIG_H
#define AS_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "as_err.h"

typedef enum { AS_CFG_STR, AS_CFG_INT, AS_CFG_BOOL } as_cfg_type_t;

typedef struct as_cfg_param {
  const char *name; /* full variable name, e.g. "AS_BATCH_MAX" */
  as_cfg_type_t type;
  const char *def; /* default as text; NULL = required (no default) */
  long long min;   /* AS_CFG_INT bounds (inclusive); AS_CFG_STR: max length in max */
  long long max;
  size_t offset; /* offsetof(struct, field): const char * / long long / bool */
  const char *help;
} as_cfg_param_t;

/* Loads every row of table into out. env lookups use getenv. Booleans accept
 * 1/0/true/false/yes/no/on/off. Strings must be printable (no control
 * characters) and at most max bytes when max > 0. Returns 0, or -EINVAL with
 * "AS_X: reason" in err. */
AS_MUST_CHECK int as_config_load(const as_cfg_param_t *table, size_t n, void *out, char *err,
                                 size_t errlen);

/* Prints "usage" and one block per variable (name, type, default, bounds,
 * help) for each table in turn. */
void as_config_help(FILE *f, const char *prog, const char *summary,
                    const as_cfg_param_t *const *tables, const size_t *sizes, size_t ntables);

#define AS_RDKAFKA_CONSUMER "CONSUMER_"
#define AS_RDKAFKA_PRODUCER "PRODUCER_"

/* Calls set(arg, "session.timeout.ms", "6000") for every shared AS_RDKAFKA_*
 * variable in the environment, then for every one of scope
 * (AS_RDKAFKA_CONSUMER or AS_RDKAFKA_PRODUCER; NULL: shared only), so a
 * scoped value overrides a shared one. Stops at the first set() that returns
 * non-zero and returns that value (set writes its own error). Names with
 * characters other than [A-Z0-9_] after the prefix are refused with
 * -EINVAL. */
AS_MUST_CHECK int as_config_each_rdkafka(int (*set)(void *arg, const char *prop, const char *value,
                                                    char *err, size_t errlen),
                                         void *arg, const char *scope, char *err, size_t errlen);

/* True if the environment sets property name (as in AS_RDKAFKA_<name>, e.g.
 * "LINGER_MS") shared or for scope, so a default of ours must not replace
 * it. */
bool as_config_rdkafka_given(const char *scope, const char *name);

#endif
