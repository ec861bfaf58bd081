/* Unit tests for as_failpoint, both variants in one binary: the library's
 * (a test build, TEST_HOOKS=1, as every tree the tests run) and the release
 * one (compiled without AS_TEST_HOOKS under as_failpoint_release_* names by
 * the Makefile), which is what the image runs. */
#include "as_failpoint.h"
#include "as_test.h"

#include <errno.h>
#include <string.h>

bool as_failpoint_release_enabled(void);
int as_failpoint_release_check(const char *value, char *err, size_t errlen);
bool as_failpoint_release_armed(const char *value, const char *where);

AS_TEST(test_build_has_the_failpoints) {
  char err[200] = "";

  AS_CHECK(as_failpoint_enabled());
  AS_CHECK_INT_EQ(as_failpoint_check("", err, sizeof err), 0);
  AS_CHECK_INT_EQ(as_failpoint_check("after_db_commit", err, sizeof err), 0);
  AS_CHECK_INT_EQ(as_failpoint_check("relay_after_delivery", err, sizeof err), 0);
  AS_CHECK(as_failpoint_armed("before_db_commit", "before_db_commit"));
  AS_CHECK(!as_failpoint_armed("before_db_commit", "after_db_commit"));
  AS_CHECK(!as_failpoint_armed(NULL, "after_db_commit"));
}

/* A misspelt failpoint would never fire and the crash test would pass
 * without crashing anything. */
AS_TEST(test_build_refuses_unknown_names) {
  char err[200] = "";

  AS_CHECK_INT_EQ(as_failpoint_check("after_commit", err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_FAILPOINT: after_commit is none of " AS_FAILPOINT_NAMES);
}

AS_TEST(release_build_refuses_any_failpoint) {
  char err[200] = "";

  AS_CHECK(!as_failpoint_release_enabled());
  AS_CHECK_INT_EQ(as_failpoint_release_check("", err, sizeof err), 0);
  AS_CHECK_INT_EQ(as_failpoint_release_check("after_db_commit", err, sizeof err), -EINVAL);
  AS_CHECK(strncmp(err, "AS_FAILPOINT: a release build has no failpoints", 47) == 0);
  AS_CHECK(!as_failpoint_release_armed("after_db_commit", "after_db_commit"));
}
