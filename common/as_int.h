/* as_int: the one strict decimal integer parser, for every integer the
 * fleet reads from text it did not write (settings, the topics file,
 * command lines, column values handed to as_cols).
 *
 * Strict means the whole string is the number: no leading or trailing
 * blanks (strtol skips leading ones), no empty string, a sign only where
 * the caller allows one, and a value outside [min, max] refused rather
 * than clamped (strtoll saturates at LLONG_MIN/LLONG_MAX).
 *
 * Ownership: nothing is kept; s is borrowed for the call. */
#ifndef AS_INT_H
#define AS_INT_H

#include "as_err.h"

enum {
  AS_INT_PLUS = 1u << 0,  /* a leading '+' is allowed */
  AS_INT_MINUS = 1u << 1, /* a leading '-' is allowed */
  AS_INT_SIGNED = AS_INT_PLUS | AS_INT_MINUS,
};

/* Parses s into *out. Returns 0; -EINVAL if s is not a decimal integer of
 * that form (*out untouched); -ERANGE if it is one but lies outside
 * [min, max] (*out untouched). */
AS_MUST_CHECK int as_int_parse(const char *s, unsigned flags, long long min, long long max,
                               long long *out);

#endif
