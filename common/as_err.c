/* as_err: the error-text buffer (as_err.h). */
#include "as_err.h"

#include <stdarg.h>
#include <stdio.h>

void as_err_set(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;

  if (err == NULL || errlen == 0) return;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}
