/* Unit tests for as_utf8_valid, table-driven: the boundary code points
 * of every sequence length (U+0000..U+007F, U+0080, U+07FF, U+0800, U+D7FF,
 * U+E000, U+FFFF, U+10000, U+10FFFF) pass; overlongs (including the
 * two-byte NUL), surrogates (alone and as a CESU-8 pair), code points above
 * U+10FFFF, the leads that cannot start a sequence, lone and stray
 * continuation bytes, truncated sequences (at the end, before ASCII, cut
 * by the length) and NUL bytes fail. Each row is copied to a buffer of
 * exactly its length, so the sanitizer build catches a read past the end.
 * as_utf8_prefix names the first bad byte (the detail of a dead letter). */
#include "as_test.h"
#include "as_utf8.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A row's bytes and length: NULs and cut sequences need the length. */
#define B(lit) lit, sizeof(lit) - 1

static const struct {
  const char *name;
  const char *s;
  size_t n;
  bool ok;
} rows[] = {
    {"empty", B(""), true},
    {"ASCII", B("hello, world"), true},
    {"U+0001", B("\x01"), true},
    {"U+007F", B("\x7f"), true},
    {"U+0080, first of two bytes", B("\xc2\x80"), true},
    {"U+07FF, last of two bytes", B("\xdf\xbf"), true},
    {"U+0800, first of three bytes", B("\xe0\xa0\x80"), true},
    {"U+D7FF, before the surrogates", B("\xed\x9f\xbf"), true},
    {"U+E000, after the surrogates", B("\xee\x80\x80"), true},
    {"U+FFFD", B("\xef\xbf\xbd"), true},
    {"U+FFFF, last of three bytes", B("\xef\xbf\xbf"), true},
    {"U+10000, first of four bytes", B("\xf0\x90\x80\x80"), true},
    {"U+10FFFF, the last code point", B("\xf4\x8f\xbf\xbf"), true},
    {"CJK", B("尺码偏小，颜色也不对"), true},
    {"emoji", B("\xf0\x9f\x98\x80"), true},
    {"every length in a row", B("a\xc3\xa9\xe4\xb8\xad\xf0\x9f\x98\x80z"), true},
    {"the length leaves out a bad byte", "ab\xff", 2, true},

    {"NUL", B("\0"), false},
    {"NUL inside", B("a\0b"), false},
    {"NUL at the end", B("ab\0"), false},
    {"overlong NUL", B("\xc0\x80"), false},
    {"overlong '/' in two bytes", B("\xc0\xaf"), false},
    {"overlong U+007F in two bytes (C1)", B("\xc1\xbf"), false},
    {"overlong '/' in three bytes", B("\xe0\x80\xaf"), false},
    {"overlong U+07FF in three bytes", B("\xe0\x9f\xbf"), false},
    {"overlong '/' in four bytes", B("\xf0\x80\x80\xaf"), false},
    {"overlong U+FFFF in four bytes", B("\xf0\x8f\xbf\xbf"), false},
    {"U+D800, first surrogate", B("\xed\xa0\x80"), false},
    {"U+DFFF, last surrogate", B("\xed\xbf\xbf"), false},
    {"CESU-8 surrogate pair", B("\xed\xa0\xbd\xed\xb8\x80"), false},
    {"U+110000", B("\xf4\x90\x80\x80"), false},
    {"lead F5", B("\xf5\x80\x80\x80"), false},
    {"lead F7, U+1FFFFF", B("\xf7\xbf\xbf\xbf"), false},
    {"five bytes", B("\xf8\x88\x80\x80\x80"), false},
    {"six bytes", B("\xfc\x84\x80\x80\x80\x80"), false},
    {"FE", B("\xfe"), false},
    {"FF", B("\xff"), false},
    {"lone continuation 80", B("\x80"), false},
    {"lone continuation BF", B("\xbf"), false},
    {"continuation after ASCII", B("a\x80"), false},
    {"extra continuation", B("\xc3\xa9\xa9"), false},
    {"two-byte lead at the end", B("ab\xc3"), false},
    {"three-byte lead at the end", B("\xe4"), false},
    {"three bytes cut after two", B("\xe4\xb8"), false},
    {"four bytes cut after three", B("\xf0\x9f\x98"), false},
    {"U+10FFFF cut after three", B("\xf4\x8f\xbf"), false},
    {"two-byte lead before ASCII",
     B("\xc3"
       "A"),
     false},
    {"three bytes cut before ASCII",
     B("\xe4\xb8"
       "A"),
     false},
    {"four bytes cut before ASCII",
     B("\xf0\x9f\x98"
       "A"),
     false},
    {"third byte not a continuation", B("\xe4\xb8\xc0"), false},
    {"fourth byte not a continuation", B("\xf0\x9f\x98\x41"), false},
    {"a new lead inside a sequence", B("\xe4\xc3\xa9"), false},
    {"the length cuts a character", "尺", 2, false},
    {"a bad byte after good text", B("尺码偏小\xff"), false},
};

AS_TEST(strict_utf8_rows) {
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char *buf = malloc(rows[i].n ? rows[i].n : 1);
    AS_CHECK(buf != NULL);
    memcpy(buf, rows[i].s, rows[i].n);
    bool ok = as_utf8_valid(buf, rows[i].n);
    free(buf);
    char got[120], want[120];
    snprintf(got, sizeof got, "%s: %s", rows[i].name, ok ? "valid" : "invalid");
    snprintf(want, sizeof want, "%s: %s", rows[i].name, rows[i].ok ? "valid" : "invalid");
    AS_CHECK_STR_EQ(got, want);
  }
}

/* Every code point, encoded by hand: exactly the scalar values pass, in
 * their shortest form; the same value one byte longer (overlong) fails. */
static size_t encode(unsigned cp, unsigned char out[4], int len) {
  static const unsigned char lead[] = {0, 0x00, 0xc0, 0xe0, 0xf0};
  for (int k = len - 1; k > 0; k--) {
    out[k] = (unsigned char)(0x80 | (cp & 0x3f));
    cp >>= 6;
  }
  out[0] = (unsigned char)(lead[len] | cp);
  return (size_t)len;
}

static int shortest(unsigned cp) {
  return cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
}

AS_TEST(every_code_point) {
  unsigned char b[4];
  for (unsigned cp = 1; cp <= 0x10ffff; cp++) {
    bool scalar = cp < 0xd800 || cp > 0xdfff;
    int len = shortest(cp);
    if (as_utf8_valid((const char *)b, encode(cp, b, len)) != scalar) {
      char what[64];
      snprintf(what, sizeof what, "U+%04X in %d bytes: %s", cp, len, scalar ? "valid" : "invalid");
      AS_CHECK_STR_EQ(what, "as expected");
    }
    if (len < 4 && as_utf8_valid((const char *)b, encode(cp, b, len + 1))) {
      char what[64];
      snprintf(what, sizeof what, "U+%04X overlong in %d bytes: valid", cp, len + 1);
      AS_CHECK_STR_EQ(what, "invalid");
    }
  }
}

AS_TEST(prefix_stops_at_the_first_bad_byte) {
  static const struct {
    const char *s;
    size_t n, want;
  } p[] = {
      {B(""), 0},
      {B("abc"), 3},
      {B("ab\0c"), 2},
      {B("\xc3\xa9x\xff"), 3},
      {B("\xe4\xb8\xad\xe4\xb8"), 3}, /* a cut character counts from its lead */
      {B("ok \xc0\xaf"), 3},
  };
  for (size_t i = 0; i < sizeof p / sizeof p[0]; i++)
    AS_CHECK_INT_EQ(as_utf8_prefix(p[i].s, p[i].n), p[i].want);
}
