/* as_int: see as_int.h. */
#include "as_int.h"

#include <errno.h>
#include <stdlib.h>

int as_int_parse(const char *s, unsigned flags, long long min, long long max, long long *out) {
  const char *d = s;
  if ((*d == '+' && (flags & AS_INT_PLUS)) || (*d == '-' && (flags & AS_INT_MINUS))) d++;
  if (*d < '0' || *d > '9') return -EINVAL; /* also "", " 3", "+" and a sign not allowed */
  char *end;
  errno = 0;
  long long v = strtoll(s, &end, 10);
  if (*end != '\0') return -EINVAL;
  if (errno == ERANGE || v < min || v > max) return -ERANGE;
  *out = v;
  return 0;
}
