/* Unit tests for as_log: JSON string escaping (every byte class, every
 * buffer size), the exact line format, level filtering, cutting of long lines
 * and lines of concurrent writers not interleaving. A small JSON validator,
 * written independently of the escaper, checks every line we produce. */
#include "as_log.h"
#include "as_test.h"

#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* --- a minimal validator for the JSON subset a log line uses ------------- */

/* Decodes one UTF-8 sequence the long way (code point, then range checks),
 * deliberately unlike the escaper's table of byte ranges. */
static size_t utf8_decode_ok(const unsigned char *p, const unsigned char *end) {
  unsigned cp;
  size_t n;

  if (p[0] < 0x80) return 1;
  n = p[0] >= 0xF0 ? 4 : p[0] >= 0xE0 ? 3 : p[0] >= 0xC0 ? 2 : 0;
  if (n == 0 || p[0] >= 0xF8 || (size_t)(end - p) < n) return 0;
  cp = p[0] & (0x7F >> n);
  for (size_t i = 1; i < n; i++) {
    if ((p[i] & 0xC0) != 0x80) return 0;
    cp = cp << 6 | (p[i] & 0x3F);
  }
  if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000)) return 0;
  return (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF ? 0 : n;
}

static const char *skip_json_string(const char *s, const char *end) {
  const unsigned char *p = (const unsigned char *)s;

  if (p >= (const unsigned char *)end || *p++ != '"') return NULL;
  while (p < (const unsigned char *)end && *p != '"') {
    size_t n = 1;

    if (*p < 0x20) return NULL;
    if (*p == '\\') {
      if (p + 1 >= (const unsigned char *)end || !strchr("\"\\/bfnrtu", p[1]) || !p[1]) return NULL;
      n = 2;
      for (size_t i = 0; p[1] == 'u' && i < 4; i++, n++)
        if (p + 2 + i >= (const unsigned char *)end ||
            !strchr("0123456789abcdefABCDEF", p[2 + i]) || !p[2 + i])
          return NULL;
    } else if ((n = utf8_decode_ok(p, (const unsigned char *)end)) == 0) {
      return NULL;
    }
    p += n;
  }
  return p < (const unsigned char *)end ? (const char *)p + 1 : NULL;
}

static const char *skip_json_value(const char *s, const char *end) {
  if (s < end && *s == '"') return skip_json_string(s, end);
  if (end - s >= 4 && memcmp(s, "null", 4) == 0) return s + 4;
  if (s < end && *s == '-') s++;
  if (s >= end || *s < '0' || *s > '9') return NULL;
  while (s < end && *s >= '0' && *s <= '9') s++;
  return s;
}

/* True if line[0..n) is exactly one flat JSON object followed by '\n'. */
static bool json_line_ok(const char *line, size_t n) {
  const char *p = line, *end = line + n - 1;

  if (n < 3 || line[n - 1] != '\n' || *p++ != '{') return false;
  while (p != NULL && p < end && *p != '}') {
    p = skip_json_string(p, end);
    if (p == NULL || p >= end || *p++ != ':') return false;
    p = skip_json_value(p, end);
    if (p != NULL && p < end && *p == ',') p++;
  }
  return p != NULL && p == end - 1 && *p == '}' && memchr(line, '\n', n - 1) == NULL;
}

/* --- helpers ------------------------------------------------------------- */

static char *escaped(const char *s) {
  static char buf[512];

  as_log_json_escape(buf, sizeof buf, s);
  return buf;
}

typedef struct {
  char *buf;
  size_t len;
  FILE *f;
} capture_t;

static void capture_start(capture_t *c, as_log_t *log) {
  c->buf = NULL;
  c->len = 0;
  c->f = open_memstream(&c->buf, &c->len);
  AS_CHECK(c->f != NULL);
  log->out = c->f;
}

static void capture_end(capture_t *c) {
  AS_CHECK_INT_EQ(fclose(c->f), 0);
}

/* The line minus its timestamp, after checking the timestamp's shape:
 * {"ts":"YYYY-MM-DDTHH:MM:SS.uuuuuuZ", ... */
static const char *after_ts(const char *line) {
  static const char shape[] = "dddd-dd-ddTdd:dd:dd.ddddddZ";

  AS_CHECK(strncmp(line, "{\"ts\":\"", 7) == 0);
  for (size_t i = 0; i < sizeof shape - 1; i++) {
    bool digit = line[7 + i] >= '0' && line[7 + i] <= '9';
    AS_CHECK(shape[i] == 'd' ? digit : line[7 + i] == shape[i]);
  }
  return line + 7 + sizeof shape - 1;
}

/* --- escaping ------------------------------------------------------------ */

AS_TEST(escape_table) {
  static const struct {
    const char *in, *out;
  } rows[] = {
      {"", "\"\""},
      {"plain text", "\"plain text\""},
      {"a\"b", "\"a\\\"b\""},
      {"a\\b", "\"a\\\\b\""},
      {"/", "\"/\""},
      {"\n\r\t\b\f", "\"\\n\\r\\t\\b\\f\""},
      {"\x01\x1f\x7f", "\"\\u0001\\u001f\\u007f\""},
      {"订单已签收", "\"订单已签收\""},
      {"ok 😀 👍🏽", "\"ok 😀 👍🏽\""},
      {"שלום עולם", "\"שלום עולם\""},
      {"مرحبا", "\"مرحبا\""},
      {"\xe2\x80\xae"
       "abc",
       "\"\xe2\x80\xae"
       "abc\""},                                    /* U+202E RLO: valid, passes */
      {"\xe2\x80\xa8", "\"\xe2\x80\xa8\""},         /* U+2028 is legal in JSON */
      {"\xc2\x80", "\"\xc2\x80\""},                 /* U+0080, smallest 2-byte */
      {"\xef\xbf\xbf", "\"\xef\xbf\xbf\""},         /* U+FFFF */
      {"\xf4\x8f\xbf\xbf", "\"\xf4\x8f\xbf\xbf\""}, /* U+10FFFF, the last */
      {"\xff", "\"\\u00ff\""},
      {"\x80", "\"\\u0080\""},                       /* lone continuation */
      {"\xc0\xaf", "\"\\u00c0\\u00af\""},            /* overlong '/' */
      {"\xc1\xbf", "\"\\u00c1\\u00bf\""},            /* overlong */
      {"\xe0\x80\xaf", "\"\\u00e0\\u0080\\u00af\""}, /* overlong, 3 bytes */
      {"\xf0\x80\x80\xaf", "\"\\u00f0\\u0080\\u0080\\u00af\""},
      {"\xed\xa0\x80", "\"\\u00ed\\u00a0\\u0080\""},            /* surrogate U+D800 */
      {"\xed\xbf\xbf", "\"\\u00ed\\u00bf\\u00bf\""},            /* surrogate U+DFFF */
      {"\xed\x9f\xbf", "\"\xed\x9f\xbf\""},                     /* U+D7FF is fine */
      {"\xf4\x90\x80\x80", "\"\\u00f4\\u0090\\u0080\\u0080\""}, /* U+110000 */
      {"\xf5\x80\x80\x80", "\"\\u00f5\\u0080\\u0080\\u0080\""},
      {"\xe4\xb8", "\"\\u00e4\\u00b8\""}, /* truncated at end */
      {"\xe4\xb8"
       "a",
       "\"\\u00e4\\u00b8a\""}, /* truncated mid-text */
      {"a\xe4\xb8\xad\xff"
       "b",
       "\"a\xe4\xb8\xad\\u00ffb\""},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    size_t len = strlen(rows[i].out);
    char *got = escaped(rows[i].in);

    AS_CHECK_STR_EQ(got, rows[i].out);
    AS_CHECK_INT_EQ(as_log_json_escape(got, 512, rows[i].in), len);
  }
}

AS_TEST(escape_null_is_json_null) {
  char buf[8];

  AS_CHECK_INT_EQ(as_log_json_escape(buf, sizeof buf, NULL), 4);
  AS_CHECK_STR_EQ(buf, "null");
  AS_CHECK_INT_EQ(as_log_json_escape(buf, 4, NULL), 0);
  AS_CHECK_STR_EQ(buf, "");
}

/* Every capacity from 0 up: never writes past cap (canary), always
 * NUL-terminates, and from cap 3 on the output is a whole JSON string. */
AS_TEST(escape_every_capacity) {
  static const char *const inputs[] = {
      "hello \"world\"\n",
      "订单已签收 😀",
      "\xff\xfe\x01\xe4\xb8",
      "a long value to be cut short",
  };

  for (size_t k = 0; k < sizeof inputs / sizeof inputs[0]; k++) {
    for (size_t cap = 0; cap < 64; cap++) {
      char buf[80];
      size_t n;

      memset(buf, '#', sizeof buf);
      n = as_log_json_escape(buf, cap, inputs[k]);
      AS_CHECK(buf[cap] == '#');
      if (cap == 0) {
        AS_CHECK_INT_EQ(n, 0);
        continue;
      }
      AS_CHECK_INT_EQ(strlen(buf), n);
      AS_CHECK(n < cap);
      if (cap >= 3) AS_CHECK(skip_json_string(buf, buf + n) == buf + n);
    }
  }
}

AS_TEST(escape_cut_is_marked_and_whole) {
  char buf[16];

  /* 13 bytes between the quotes: 5 of text + "...(cut)". */
  AS_CHECK_INT_EQ(as_log_json_escape(buf, sizeof buf, "abcdefghijklmnopq"), 15);
  AS_CHECK_STR_EQ(buf, "\"abcde...(cut)\"");
  /* A 3-byte character is never split. */
  AS_CHECK_INT_EQ(as_log_json_escape(buf, sizeof buf, "ab订单已签收"), 15);
  AS_CHECK_STR_EQ(buf, "\"ab订...(cut)\"");
  /* Nor is an escape. */
  as_log_json_escape(buf, sizeof buf, "abcd\x01xxxxxxxxxx");
  AS_CHECK_STR_EQ(buf, "\"abcd...(cut)\"");
  /* Too small for the mark: whole units only. */
  as_log_json_escape(buf, 8, "abcdefgh");
  AS_CHECK_STR_EQ(buf, "\"abcde\"");
}

/* --- levels -------------------------------------------------------------- */

AS_TEST(level_parse) {
  static const struct {
    const char *in;
    int rc;
    as_log_level_t level;
  } rows[] = {
      {"debug", 0, AS_LOG_DEBUG},    {"info", 0, AS_LOG_INFO},    {"warn", 0, AS_LOG_WARN},
      {"error", 0, AS_LOG_ERROR},    {"INFO", -22, AS_LOG_INFO},  {"", -22, AS_LOG_INFO},
      {"warning", -22, AS_LOG_INFO}, {"info ", -22, AS_LOG_INFO}, {NULL, -22, AS_LOG_INFO},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    as_log_level_t l = AS_LOG_INFO;

    AS_CHECK_INT_EQ(as_log_level_parse(rows[i].in, &l), rows[i].rc);
    AS_CHECK_INT_EQ(l, rows[i].level);
  }
}

AS_TEST(level_filter) {
  as_log_t log;
  capture_t c;

  as_log_init(&log, "intake", "host-1", AS_LOG_WARN);
  capture_start(&c, &log);
  AS_DEBUG(&log, "dropped");
  AS_INFO(&log, "dropped", AS_F_INT("n", 1));
  AS_WARN(&log, "kept");
  AS_ERROR(&log, "kept too");
  capture_end(&c);
  AS_CHECK(strstr(c.buf, "dropped") == NULL);
  AS_CHECK(strstr(c.buf, "\"level\":\"warn\",") != NULL);
  AS_CHECK(strstr(c.buf, "\"level\":\"error\",") != NULL);
  free(c.buf);
}

/* --- lines --------------------------------------------------------------- */

AS_TEST(line_exact) {
  as_log_t log;
  capture_t c;

  as_log_init(&log, "intake", "host-1", AS_LOG_DEBUG);
  capture_start(&c, &log);
  AS_INFO(&log, "order stored", AS_F_STR("order_id", "o-1"), AS_F_INT("attempt", 3),
          AS_F_INT("min", LLONG_MIN), AS_F_STR("reason", NULL));
  capture_end(&c);
  AS_CHECK(json_line_ok(c.buf, c.len));
  AS_CHECK_STR_EQ(after_ts(c.buf),
                  "\",\"level\":\"info\",\"service\":\"intake\",\"instance\":\"host-1\","
                  "\"msg\":\"order stored\",\"order_id\":\"o-1\",\"attempt\":3,"
                  "\"min\":-9223372036854775808,\"reason\":null}\n");
  free(c.buf);
}

AS_TEST(line_without_fields_and_escaped_everything) {
  as_log_t log;
  capture_t c;
  char *second;

  as_log_init(&log, "in\"take", "h\n1", AS_LOG_DEBUG);
  capture_start(&c, &log);
  AS_DEBUG(&log, "bad \xff byte\t\"q\"");
  as_log_emit(&log, AS_LOG_ERROR, NULL, (as_log_field_t[]){AS_F_STR("k\"ey", "v\x01")}, 1);
  capture_end(&c);
  second = strchr(c.buf, '\n') + 1;
  AS_CHECK(json_line_ok(c.buf, (size_t)(second - c.buf)));
  AS_CHECK(json_line_ok(second, strlen(second)));
  second[-1] = '\0';
  AS_CHECK_STR_EQ(after_ts(c.buf),
                  "\",\"level\":\"debug\",\"service\":\"in\\\"take\",\"instance\":\"h\\n1\","
                  "\"msg\":\"bad \\u00ff byte\\t\\\"q\\\"\"}");
  AS_CHECK_STR_EQ(after_ts(second),
                  "\",\"level\":\"error\",\"service\":\"in\\\"take\",\"instance\":"
                  "\"h\\n1\",\"msg\":\"\",\"k\\\"ey\":\"v\\u0001\"}\n");
  free(c.buf);
}

AS_TEST(init_cuts_long_names) {
  char big[300];
  as_log_t log;

  memset(big, 'x', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  as_log_init(&log, big, big, AS_LOG_INFO);
  AS_CHECK_INT_EQ(strlen(log.service), sizeof log.service - 1);
  AS_CHECK_INT_EQ(strlen(log.instance), sizeof log.instance - 1);
  AS_CHECK(log.out == stderr);
  as_log_init(&log, NULL, NULL, AS_LOG_INFO);
  AS_CHECK_STR_EQ(log.service, "");
}

/* A huge message is cut, the short fields after it survive whole. */
AS_TEST(long_line_cut_longest_first) {
  size_t big = 20000;
  char *msg = malloc(big + 1), *val = malloc(big + 1);
  as_log_t log;
  capture_t c;

  AS_CHECK(msg != NULL && val != NULL);
  memset(msg, 'm', big);
  msg[big] = '\0';
  for (size_t i = 0; i < big; i++) /* escapes 6x: cut by escaped size */
    val[i] = (char)(i % 2 ? 0x01 : 0xff);
  val[big] = '\0';
  as_log_init(&log, "intake", "host-1", AS_LOG_DEBUG);
  capture_start(&c, &log);
  AS_ERROR(&log, msg, AS_F_STR("order_id", "o-42"), AS_F_STR("blob", val), AS_F_INT("n", 7));
  capture_end(&c);
  AS_CHECK(c.len <= 8192);
  AS_CHECK(c.len > 8000);
  AS_CHECK(json_line_ok(c.buf, c.len));
  AS_CHECK(strstr(c.buf, "m...(cut)\",\"order_id\":\"o-42\",\"blob\":\"") != NULL);
  AS_CHECK(strstr(c.buf, "...(cut)\",\"n\":7}\n") != NULL);
  free(c.buf);
  free(msg);
  free(val);
}

/* Far too many fields: the line stays within 8 KiB and valid, dropping
 * whole fields at the end. */
AS_TEST(long_line_many_fields) {
  enum { N = 3000 };
  static as_log_field_t f[N];
  as_log_t log;
  capture_t c;

  for (size_t i = 0; i < N; i++)
    f[i] = i % 2 ? AS_F_STR("some_key", "some value") : AS_F_INT("num", i);
  as_log_init(&log, "intake", "host-1", AS_LOG_DEBUG);
  capture_start(&c, &log);
  as_log_emit(&log, AS_LOG_INFO, "many", f, N);
  capture_end(&c);
  AS_CHECK(c.len <= 8192);
  AS_CHECK(c.len > 8000);
  AS_CHECK(json_line_ok(c.buf, c.len));
  free(c.buf);
}

/* Lines whose value bytes are exactly at the limit are not cut. */
AS_TEST(long_line_boundary) {
  as_log_t log;
  capture_t c;
  char *msg = malloc(9000);
  size_t fixed;

  AS_CHECK(msg != NULL);
  as_log_init(&log, "s", "i", AS_LOG_DEBUG);
  capture_start(&c, &log);
  AS_INFO(&log, "");
  fixed = c.len; /* the line with an empty message */
  memset(msg, 'a', 8192 - fixed);
  msg[8192 - fixed] = '\0';
  AS_INFO(&log, msg);
  msg[8192 - fixed] = 'a';
  msg[8193 - fixed] = '\0';
  AS_INFO(&log, msg);
  capture_end(&c);
  AS_CHECK_INT_EQ(c.len, fixed + 8192 + 8192);
  AS_CHECK(strstr(c.buf + fixed, "a\"}\n") == c.buf + fixed + 8192 - 4);
  AS_CHECK(strstr(c.buf + fixed + 8192, "...(cut)\"}\n") != NULL);
  free(c.buf);
  free(msg);
}

/* Four processes log 3000-byte lines into one pipe; every line read back
 * must be whole. Lines are under PIPE_BUF, so one write() each is atomic. */
AS_TEST(concurrent_lines_do_not_interleave) {
  enum { PROCS = 4, LINES = 100 };
  int fds[2], status;
  char *all = NULL, *line;
  size_t len = 0, nlines = 0;
  FILE *mem;
  char chunk[4096];
  ssize_t r;

  AS_CHECK_INT_EQ(pipe(fds), 0);
  for (int p = 0; p < PROCS; p++) {
    if (fork() == 0) {
      char msg[3000];
      as_log_t log;

      close(fds[0]);
      memset(msg, 'a' + p, sizeof msg - 1);
      msg[sizeof msg - 1] = '\0';
      as_log_init(&log, "intake", "host-1", AS_LOG_DEBUG);
      log.out = fdopen(fds[1], "w");
      for (int i = 0; i < LINES; i++) AS_INFO(&log, msg, AS_F_INT("i", i));
      fclose(log.out);
      _exit(0);
    }
  }
  close(fds[1]);
  mem = open_memstream(&all, &len); /* after the forks: not the writers' */
  AS_CHECK(mem != NULL);
  while ((r = read(fds[0], chunk, sizeof chunk)) > 0) fwrite(chunk, 1, (size_t)r, mem);
  close(fds[0]);
  for (int p = 0; p < PROCS; p++) {
    AS_CHECK(wait(&status) > 0);
    AS_CHECK_INT_EQ(status, 0);
  }
  AS_CHECK_INT_EQ(fclose(mem), 0);
  for (char *s = all; (line = strchr(s, '\n')) != NULL; s = line + 1, nlines++)
    AS_CHECK(json_line_ok(s, (size_t)(line - s) + 1));
  AS_CHECK_INT_EQ(nlines, PROCS * LINES);
  free(all);
}

/* The validator itself must reject what it is there to catch. */
AS_TEST(validator_rejects_bad_json) {
  static const char *const bad[] = {
      "{\"a\":\"x\"\n",
      "{\"a\":\"\x01\"}\n",
      "{\"a\":\"\xff\"}\n",
      "{\"a\":\"\\q\"}\n",
      "{\"a\":\"\xed\xa0\x80\"}\n",
      "{\"a\":\"\xc0\xaf\"}\n",
      "{\"a\":\"\\u12\"}\n",
      "{\"a\"}\n",
      "{\"a\":1}x\n",
  };

  {
    const char *good = "{\"a\":\"\xf0\x9f\x98\x80\",\"b\":-1,\"c\":null}\n";

    AS_CHECK(json_line_ok(good, strlen(good)));
  }
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    AS_CHECK(!json_line_ok(bad[i], strlen(bad[i])));
}
