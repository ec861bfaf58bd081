/* as_utf8: strict UTF-8 (RFC 3629) for every string the fleet takes in: no
 * overlongs, surrogates or code points above U+10FFFF, no truncated
 * sequences, and no NUL byte (a C string would end there: what is stored or
 * compared would not be what was sent).
 *
 * Ownership: nothing is kept; s is borrowed for the call. */
#ifndef AS_UTF8_H
#define AS_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* True if s[0..len) is strict UTF-8 without NUL. */
bool as_utf8_valid(const char *s, size_t len);

/* The length of the longest valid prefix of s[0..len): len when all of it is
 * valid, else the offset of the first byte that is not (a NUL, or the start
 * of a bad sequence). */
size_t as_utf8_prefix(const char *s, size_t len);

#endif
