/* as_failpoint: the crash points the integration tests use (AS_FAILPOINT:
 * SIGKILL at a chosen place to prove nothing is lost). They exist only in
 * test builds: compiled with -DAS_TEST_HOOKS (the Makefile's TEST_HOOKS=1,
 * its default, for build/, build/asan and build/tsan that the tests run).
 * A release build (TEST_HOOKS=0: the image) has no crash points and
 * refuses to start with AS_FAILPOINT set, so a stray variable in a
 * production environment cannot kill workers. */
#ifndef AS_FAILPOINT_H
#define AS_FAILPOINT_H

#include <stdbool.h>
#include <stddef.h>

#include "as_err.h"

/* The failpoints there are, for the help text and the check. */
#define AS_FAILPOINT_NAMES "before_db_commit, after_db_commit or relay_after_delivery"

/* True if this binary has the test hooks. */
bool as_failpoint_enabled(void);

/* Validates the AS_FAILPOINT value: empty is always fine; in a test build
 * one of AS_FAILPOINT_NAMES; in a release build nothing else. Returns 0, or
 * -EINVAL with "AS_FAILPOINT: reason" in err. */
AS_MUST_CHECK int as_failpoint_check(const char *value, char *err, size_t errlen);

/* True if value (the configured failpoint, may be NULL) names where and this
 * is a test build; the caller then kills the process. Always false in a
 * release build. */
bool as_failpoint_armed(const char *value, const char *where);

#endif
