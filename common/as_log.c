/* as_log: JSON-lines logging. Every event becomes one line built in a stack
 * buffer and written with a single fwrite + fflush, so that lines of processes
 * sharing a stderr pipe do not interleave. String values are escaped byte by
 * byte: valid UTF-8 passes through, anything a JSON reader could choke on
 * (quotes, backslashes, control characters, invalid UTF-8) is escaped, so a
 * log line is always valid JSON whatever a caller hands us. A line that would
 * exceed AS_LOG__LINE_MAX has its longest values cut first ("water filling"),
 * so the short, useful fields (ids, error codes) survive a huge message. */
#include "as_log.h"

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

enum { AS_LOG__LINE_MAX = 8192 };

static const char CUT_MARK[] = "...(cut)";
#define CUT_MARK_LEN (sizeof CUT_MARK - 1)

/* One input unit (a valid UTF-8 sequence or a single byte) and its escaped
 * form; the longest output is "\u00XX". */
typedef struct {
  size_t in;
  size_t outlen;
  char out[6];
} esc_unit_t;

/* Length of the valid UTF-8 sequence at p, or 0 if p starts an invalid one
 * (overlong, surrogate, above U+10FFFF, truncated). p is NUL-terminated, and
 * NUL is never a continuation byte, so we never read past the terminator. */
static size_t utf8_len(const unsigned char *p) {
  unsigned char c = p[0], lo = 0x80, hi = 0xBF;
  size_t n;

  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF)
    n = 2;
  else if (c >= 0xE0 && c <= 0xEF)
    n = 3;
  else if (c >= 0xF0 && c <= 0xF4)
    n = 4;
  else
    return 0;
  /* The second byte's range is what rules out overlongs (E0, F0),
   * surrogates (ED) and code points above U+10FFFF (F4). */
  if (c == 0xE0)
    lo = 0xA0;
  else if (c == 0xED)
    hi = 0x9F;
  else if (c == 0xF0)
    lo = 0x90;
  else if (c == 0xF4)
    hi = 0x8F;
  if (p[1] < lo || p[1] > hi) return 0;
  for (size_t i = 2; i < n; i++)
    if (p[i] < 0x80 || p[i] > 0xBF) return 0;
  return n;
}

static void esc_hex(esc_unit_t *u, unsigned char c) {
  static const char hex[] = "0123456789abcdef";

  memcpy(u->out, "\\u00", 4);
  u->out[4] = hex[c >> 4];
  u->out[5] = hex[c & 0xF];
  u->outlen = 6;
}

static void esc_next(const unsigned char *p, esc_unit_t *u) {
  static const char shorts[][2] = {['"'] = "\"", ['\\'] = "\\", ['\b'] = "b", ['\f'] = "f",
                                   ['\n'] = "n", ['\r'] = "r",  ['\t'] = "t"};
  unsigned char c = p[0];
  size_t n = utf8_len(p);

  if (n > 1 || (n == 1 && c >= 0x20 && c != 0x7F && c != '"' && c != '\\')) {
    memcpy(u->out, p, n);
    u->in = u->outlen = n;
    return;
  }
  u->in = 1;
  if (c < sizeof shorts / sizeof shorts[0] && shorts[c][0] != '\0') {
    u->out[0] = '\\';
    u->out[1] = shorts[c][0];
    u->outlen = 2;
    return;
  }
  /* Control characters, DEL and bytes of invalid sequences. */
  esc_hex(u, c);
}

/* Escaped length of s without quotes; stops counting once past stop, since
 * callers only need to know that a value is too long. */
static size_t escaped_len(const char *s, size_t stop) {
  const unsigned char *p = (const unsigned char *)s;
  size_t len = 0;
  esc_unit_t u;

  while (*p != '\0' && len <= stop) {
    esc_next(p, &u);
    p += u.in;
    len += u.outlen;
  }
  return len;
}

/* Writes the escaped body of s (no quotes, no NUL) into dst, whole units
 * only, at most budget bytes; returns the bytes written. */
static size_t escape_body(char *dst, size_t budget, const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  size_t len = 0;
  esc_unit_t u;

  while (*p != '\0') {
    esc_next(p, &u);
    if (u.outlen > budget - len) break;
    memcpy(dst + len, u.out, u.outlen);
    len += u.outlen;
    p += u.in;
  }
  return len;
}

/* Writes "s" into dst with at most budget bytes between the quotes (dst has
 * room for budget + 2). A value that does not fit ends with CUT_MARK when the
 * mark fits, so a reader can tell a cut value from a short one. */
static size_t write_json_str(char *dst, size_t budget, const char *s) {
  size_t len = 1;

  dst[0] = '"';
  if (escaped_len(s, budget) <= budget) {
    len += escape_body(dst + len, budget, s);
  } else if (budget >= CUT_MARK_LEN) {
    len += escape_body(dst + len, budget - CUT_MARK_LEN, s);
    memcpy(dst + len, CUT_MARK, CUT_MARK_LEN);
    len += CUT_MARK_LEN;
  } else {
    len += escape_body(dst + len, budget, s);
  }
  dst[len++] = '"';
  return len;
}

size_t as_log_json_escape(char *buf, size_t cap, const char *s) {
  size_t len;

  if (cap == 0) return 0;
  if (s == NULL) {
    len = cap > 4 ? 4 : 0;
    memcpy(buf, "null", len);
  } else if (cap < 3) {
    len = 0; /* not even room for "" */
  } else {
    len = write_json_str(buf, cap - 3, s);
  }
  buf[len] = '\0';
  return len;
}

int as_log_level_parse(const char *s, as_log_level_t *out) {
  static const char *const names[] = {"debug", "info", "warn", "error"};

  for (size_t i = 0; s != NULL && i < sizeof names / sizeof names[0]; i++) {
    if (strcmp(s, names[i]) == 0) {
      *out = (as_log_level_t)i;
      return 0;
    }
  }
  return -EINVAL;
}

static const char *level_name(as_log_level_t level) {
  static const char *const names[] = {"debug", "info", "warn", "error"};

  if ((unsigned)level < sizeof names / sizeof names[0]) return names[level];
  return "unknown";
}

/* Copies src into dst[cap] and cuts it at cap - 1 bytes (a cut inside a UTF-8
 * sequence is harmless: the escaper writes the stray bytes as \u00XX). */
static void copy_cut(char *dst, size_t cap, const char *src) {
  size_t n = src != NULL ? strnlen(src, cap - 1) : 0;

  memcpy(dst, src != NULL ? src : "", n);
  dst[n] = '\0';
}

void as_log_init(as_log_t *log, const char *service, const char *instance,
                 as_log_level_t min_level) {
  copy_cut(log->service, sizeof log->service, service);
  copy_cut(log->instance, sizeof log->instance, instance);
  log->min_level = min_level;
  log->out = stderr;
}

/* The line under construction. cap keeps room for the closing "}\n"; once an
 * append does not fit, full sticks and the caller rolls the field back, so a
 * line is always complete JSON however many fields it was given. */
typedef struct {
  char *p;
  size_t len;
  size_t cap;
  bool full;
} line_t;

static void line_raw(line_t *l, const char *s, size_t n) {
  if (l->full || n > l->cap - l->len) {
    l->full = true;
    return;
  }
  memcpy(l->p + l->len, s, n);
  l->len += n;
}

static void line_lit(line_t *l, const char *s) {
  line_raw(l, s, strlen(s));
}

/* Appends s as a JSON string with at most vcap bytes of escaped content. */
static void line_str(line_t *l, const char *s, size_t vcap) {
  size_t room = l->full ? 0 : l->cap - l->len;

  if (s == NULL) {
    line_lit(l, "null");
    return;
  }
  if (room < 2) {
    l->full = true;
    return;
  }
  if (vcap > room - 2) vcap = room - 2;
  /* Too little room even for the cut mark: drop rather than cut silently. */
  if (vcap < CUT_MARK_LEN && escaped_len(s, vcap) > vcap) {
    l->full = true;
    return;
  }
  l->len += write_json_str(l->p + l->len, vcap, s);
}

static size_t int_len(long long v) {
  char tmp[24];

  return (size_t)snprintf(tmp, sizeof tmp, "%lld", v);
}

/* Bytes of the line that do not depend on how long values are cut: keys,
 * punctuation, quotes, numbers and null. */
static size_t fields_overhead(const as_log_field_t *f, size_t n) {
  size_t sum = sizeof ",\"msg\":\"\"" - 1;

  for (size_t i = 0; i < n; i++) {
    if (f[i].key == NULL) continue;
    sum += 4 + escaped_len(f[i].key, AS_LOG__LINE_MAX); /* ,"key": */
    if (f[i].kind == AS_LOG_F_INT)
      sum += int_len(f[i].num);
    else
      sum += f[i].str != NULL ? 2 : 4;
  }
  return sum;
}

static size_t min_sz(size_t a, size_t b) {
  return a < b ? a : b;
}

/* Total escaped value bytes when every value is capped at c. */
static size_t values_len(const char *msg, const as_log_field_t *f, size_t n, size_t c) {
  size_t sum = min_sz(escaped_len(msg, c), c);

  for (size_t i = 0; i < n; i++)
    if (f[i].key != NULL && f[i].kind == AS_LOG_F_STR && f[i].str != NULL)
      sum += min_sz(escaped_len(f[i].str, c), c);
  return sum;
}

/* The largest per-value cap that makes all values fit in budget: values
 * shorter than the cap stay whole, only the longest ones are cut. */
static size_t value_cap(const char *msg, const as_log_field_t *f, size_t n, size_t budget) {
  size_t lo = CUT_MARK_LEN, hi = AS_LOG__LINE_MAX;

  if (values_len(msg, f, n, hi) <= budget) return hi;
  while (lo < hi) {
    size_t mid = lo + (hi - lo + 1) / 2;

    if (values_len(msg, f, n, mid) <= budget)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

static void line_ts(line_t *l) {
  struct timespec ts;
  struct tm tm;
  char buf[64];
  size_t n;

  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  n = strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, sizeof buf - n, ".%06ldZ", ts.tv_nsec / 1000);
  line_lit(l, buf);
}

static void line_field(line_t *l, const as_log_field_t *f, size_t vcap) {
  size_t mark = l->len;
  char num[24];

  line_lit(l, ",");
  line_str(l, f->key, AS_LOG__LINE_MAX);
  line_lit(l, ":");
  if (f->kind == AS_LOG_F_INT) {
    snprintf(num, sizeof num, "%lld", f->num);
    line_lit(l, num);
  } else {
    line_str(l, f->str, vcap);
  }
  if (l->full) l->len = mark; /* drop the field whole rather than break the JSON */
}

void as_log_emit(const as_log_t *log, as_log_level_t level, const char *msg,
                 const as_log_field_t *fields, size_t nfields) {
  char buf[AS_LOG__LINE_MAX];
  line_t l = {.p = buf, .len = 0, .cap = sizeof buf - 2, .full = false};
  size_t vcap;

  if (level < log->min_level) return;
  if (msg == NULL) msg = "";
  line_lit(&l, "{\"ts\":\"");
  line_ts(&l);
  line_lit(&l, "\",\"level\":\"");
  line_lit(&l, level_name(level));
  line_lit(&l, "\",\"service\":");
  line_str(&l, log->service, AS_LOG__LINE_MAX);
  line_lit(&l, ",\"instance\":");
  line_str(&l, log->instance, AS_LOG__LINE_MAX);
  vcap = l.len + fields_overhead(fields, nfields);
  vcap = value_cap(msg, fields, nfields, vcap < l.cap ? l.cap - vcap : 0);
  line_lit(&l, ",\"msg\":");
  line_str(&l, msg, vcap);
  for (size_t i = 0; i < nfields; i++)
    if (fields[i].key != NULL) line_field(&l, &fields[i], vcap);
  memcpy(buf + l.len, "}\n", 2);
  fwrite(buf, 1, l.len + 2, log->out != NULL ? log->out : stderr);
  fflush(log->out != NULL ? log->out : stderr);
}
