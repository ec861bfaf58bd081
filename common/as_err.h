/* as_err: the error contract every module shares. int functions return 0
 * or a negative errno and are marked AS_MUST_CHECK, so a result dropped by
 * accident fails the build; a caller that drops one on purpose says so
 * with as_ignore and a comment (gcc does not let a (void) cast silence
 * warn_unused_result). Errors that need words go into a caller's buffer
 * (err, errlen) through as_err_set.
 *
 * Ownership: nothing is allocated; err is the caller's. */
#ifndef AS_ERR_H
#define AS_ERR_H

#include <stddef.h>

#define AS_MUST_CHECK __attribute__((warn_unused_result))

/* Drops a must-check result the caller has no use for; the call site says
 * why in a comment. */
static inline void as_ignore(int rc) {
  (void)rc;
}

/* Formats the message into err[0..errlen), truncated; a NULL err or a zero
 * errlen is a no-op, for callers that want no text. */
void as_err_set(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
