/* intake_utf8: a strict UTF-8 validator for buyer text. protobuf-c does not
 * check proto3 strings, and PostgreSQL would refuse invalid bytes with an
 * error that fails the whole batch: intake answers the buyer instead. */
#include "intake.h"

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

bool intake_utf8_valid(const char *s, size_t len) {
  const unsigned char *p = (const unsigned char *)s;
  size_t i = 0;
  while (i < len) {
    int n = seq_len(p[i]);
    if (n == 0 || (size_t)n > len - i) return false;
    if (p[i] == 0) return false;
    if (n > 1 && !second_ok(p[i], p[i + 1])) return false;
    for (int k = 2; k < n; k++)
      if ((p[i + k] & 0xC0) != 0x80) return false;
    i += (size_t)n;
  }
  return true;
}
