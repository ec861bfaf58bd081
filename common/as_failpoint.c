/* as_failpoint: test-only crash points, compiled in with AS_TEST_HOOKS.
 * The release variant keeps the same symbols so that callers need no
 * #ifdef of their own; only this file changes with the flag. */
#include "as_failpoint.h"

#include <errno.h>
#include <string.h>

#ifdef AS_TEST_HOOKS
static const char *const names[] = {"before_db_commit", "after_db_commit", "relay_after_delivery"};

bool as_failpoint_enabled(void) {
  return true;
}

int as_failpoint_check(const char *value, char *err, size_t errlen) {
  if (value == NULL || value[0] == '\0') return 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (strcmp(value, names[i]) == 0) return 0;
  as_err_set(err, errlen, "AS_FAILPOINT: %.40s is none of " AS_FAILPOINT_NAMES, value);
  return -EINVAL;
}

bool as_failpoint_armed(const char *value, const char *where) {
  return value != NULL && strcmp(value, where) == 0;
}
#else
bool as_failpoint_enabled(void) {
  return false;
}

int as_failpoint_check(const char *value, char *err, size_t errlen) {
  if (value == NULL || value[0] == '\0') return 0;
  as_err_set(err, errlen,
             "AS_FAILPOINT: a release build has no failpoints (they are for tests; unset it)");
  return -EINVAL;
}

bool as_failpoint_armed(const char *value, const char *where) {
  (void)value;
  (void)where;
  return false;
}
#endif
