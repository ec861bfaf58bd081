/* as_utf8: the strict UTF-8 validator of the fleet. protobuf-c does not
 * check proto3 strings, and PostgreSQL would refuse invalid bytes with an
 * error that fails the whole batch: the envelope decoder refuses them first
 * (as_wire), and intake checks its text with the same function. */
#include "as_utf8.h"

/* Length of the sequence a lead byte starts, 0 if it cannot start one. */
static int seq_len(unsigned char c) {
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return 2;
  if (c >= 0xE0 && c <= 0xEF) return 3;
  if (c >= 0xF0 && c <= 0xF4) return 4;
  return 0; /* continuation bytes, overlong leads C0/C1, F5..FF */
}

/* The second byte's range depends on the lead (RFC 3629 table 4): this is
 * where overlongs, surrogates and values above U+10FFFF are refused. */
static bool second_ok(unsigned char lead, unsigned char c) {
  switch (lead) {
    case 0xE0:
      return c >= 0xA0 && c <= 0xBF;
    case 0xED:
      return c >= 0x80 && c <= 0x9F;
    case 0xF0:
      return c >= 0x90 && c <= 0xBF;
    case 0xF4:
      return c >= 0x80 && c <= 0x8F;
    default:
      return c >= 0x80 && c <= 0xBF;
  }
}

/* True if the sequence at p[0..avail) is one whole, valid character. */
static bool char_ok(const unsigned char *p, size_t avail, int n) {
  if (n == 0 || (size_t)n > avail) return false;
  if (n > 1 && !second_ok(p[0], p[1])) return false;
  for (int k = 2; k < n; k++)
    if ((p[k] & 0xC0) != 0x80) return false;
  return true;
}

size_t as_utf8_prefix(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    if (p[i] > 0 && p[i] < 0x80) { /* ASCII, the common case, one compare */
      i++;
      continue;
    }
    int n = seq_len(p[i]);
    if (p[i] == 0 || !char_ok(p + i, len - i, n)) return i;
    i += (size_t)n;
  }
  return len;
}

bool as_utf8_valid(const char *s, size_t len) {
  return as_utf8_prefix(s, len) == len;
}
