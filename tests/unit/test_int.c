/* Unit tests for as_int_parse, table-driven: what each caller's form
 * accepts (digits only, a '-' allowed, any sign), the strings strtol would
 * take and we refuse (blanks, trailing bytes, empty, a sign alone), the
 * bounds exactly and one past them, and overflow refused rather than
 * saturated. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>

#include "as_int.h"
#include "as_test.h"

static const struct {
  const char *s;
  unsigned flags;
  long long min, max;
  int rc;
  long long v;
} rows[] = {
    {"0", 0, 0, 10, 0, 0},
    {"10", 0, 0, 10, 0, 10},
    {"11", 0, 0, 10, -ERANGE, 0},
    {"007", 0, 0, 10, 0, 7},
    {"", 0, 0, 10, -EINVAL, 0},
    {" 3", 0, 0, 10, -EINVAL, 0},
    {"3 ", 0, 0, 10, -EINVAL, 0},
    {"3x", 0, 0, 10, -EINVAL, 0},
    {"+3", 0, 0, 10, -EINVAL, 0},
    {"-0", 0, 0, 10, -EINVAL, 0},
    {"0x1f", 0, 0, 100, -EINVAL, 0},
    {"-1", AS_INT_MINUS, -1, 10, 0, -1},
    {"-2", AS_INT_MINUS, -1, 10, -ERANGE, 0},
    {"+1", AS_INT_MINUS, -1, 10, -EINVAL, 0},
    {"-", AS_INT_MINUS, -1, 10, -EINVAL, 0},
    {"- 1", AS_INT_MINUS, -1, 10, -EINVAL, 0},
    {"--1", AS_INT_MINUS, -9, 10, -EINVAL, 0},
    {"+42", AS_INT_SIGNED, 0, 100, 0, 42},
    {"+", AS_INT_SIGNED, 0, 100, -EINVAL, 0},
    {"9223372036854775807", AS_INT_SIGNED, LLONG_MIN, LLONG_MAX, 0, LLONG_MAX},
    {"-9223372036854775808", AS_INT_SIGNED, LLONG_MIN, LLONG_MAX, 0, LLONG_MIN},
    {"9223372036854775808", AS_INT_SIGNED, LLONG_MIN, LLONG_MAX, -ERANGE, 0},
    {"-9223372036854775809", AS_INT_SIGNED, LLONG_MIN, LLONG_MAX, -ERANGE, 0},
    {"99999999999999999999", 0, 0, 10, -ERANGE, 0},
};

AS_TEST(strict_integer_rows) {
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    long long v = -12345;
    int rc = as_int_parse(rows[i].s, rows[i].flags, rows[i].min, rows[i].max, &v);
    char got[96], want[96];
    snprintf(got, sizeof got, "\"%s\": rc=%d v=%lld", rows[i].s, rc, v);
    snprintf(want, sizeof want, "\"%s\": rc=%d v=%lld", rows[i].s, rows[i].rc,
             rows[i].rc == 0 ? rows[i].v : -12345);
    AS_CHECK_STR_EQ(got, want);
  }
}
