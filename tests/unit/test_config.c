/* Unit tests for as_config: every type at and around its bounds, malformed
 * values with their exact error text, required variables, the help text and
 * the AS_RDKAFKA_* pass-through. Each case runs in its own process, so
 * setenv/unsetenv here never leak into another case. */
#include "as_config.h"
#include "as_test.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct {
  long long batch;
  const char *dsn;
  bool flag;
  const char *name;
  long long any;
} cfg_t;

static const as_cfg_param_t TABLE[] = {
    {"AS_T_BATCH", AS_CFG_INT, "500", 1, 10000, offsetof(cfg_t, batch),
     "Messages per database transaction."},
    {"AS_T_DSN", AS_CFG_STR, NULL, 0, 0, offsetof(cfg_t, dsn), "PostgreSQL connection string."},
    {"AS_T_FLAG", AS_CFG_BOOL, "false", 0, 0, offsetof(cfg_t, flag), "Enable the thing."},
    {"AS_T_NAME", AS_CFG_STR, "intake", 0, 8, offsetof(cfg_t, name), "Consumer name."},
    {"AS_T_ANY", AS_CFG_INT, "-1", 0, 0, offsetof(cfg_t, any), "Unbounded."},
};
#define NTABLE (sizeof TABLE / sizeof TABLE[0])

/* Loads TABLE with AS_T_DSN set and var=value (value NULL: unset). */
static int load_with(const char *var, const char *value, cfg_t *c, char *err, size_t errlen) {
  AS_CHECK_INT_EQ(setenv("AS_T_DSN", "dbname=x", 1), 0);
  if (value != NULL)
    AS_CHECK_INT_EQ(setenv(var, value, 1), 0);
  else
    AS_CHECK_INT_EQ(unsetenv(var), 0);
  memset(c, 0, sizeof *c);
  return as_config_load(TABLE, NTABLE, c, err, errlen);
}

AS_TEST(defaults) {
  cfg_t c;
  char err[256];

  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", NULL, &c, err, sizeof err), 0);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK_INT_EQ(c.batch, 500);
  AS_CHECK_STR_EQ(c.dsn, "dbname=x");
  AS_CHECK(!c.flag);
  AS_CHECK_STR_EQ(c.name, "intake");
  AS_CHECK_INT_EQ(c.any, -1);
}

AS_TEST(int_values) {
  static const struct {
    const char *var, *in;
    int rc;
    long long want;
  } rows[] = {
      {"AS_T_BATCH", "1", 0, 1},
      {"AS_T_BATCH", "0", -EINVAL, 0},
      {"AS_T_BATCH", "10000", 0, 10000},
      {"AS_T_BATCH", "10001", -EINVAL, 0},
      {"AS_T_BATCH", "+42", 0, 42},
      {"AS_T_BATCH", "0042", 0, 42},
      {"AS_T_BATCH", "-1", -EINVAL, 0},
      {"AS_T_BATCH", "", 0, 500}, /* empty counts as unset */
      {"AS_T_BATCH", "abc", -EINVAL, 0},
      {"AS_T_BATCH", "12abc", -EINVAL, 0},
      {"AS_T_BATCH", " 12", -EINVAL, 0},
      {"AS_T_BATCH", "12 ", -EINVAL, 0},
      {"AS_T_BATCH", "0x10", -EINVAL, 0},
      {"AS_T_BATCH", "1e3", -EINVAL, 0},
      {"AS_T_BATCH", "-", -EINVAL, 0},
      {"AS_T_BATCH", "99999999999999999999", -EINVAL, 0},
      {"AS_T_ANY", "9223372036854775807", 0, 9223372036854775807LL},
      {"AS_T_ANY", "9223372036854775808", -EINVAL, 0},
      {"AS_T_ANY", "-9223372036854775808", 0, -9223372036854775807LL - 1},
      {"AS_T_ANY", "-9223372036854775809", -EINVAL, 0},
      {"AS_T_ANY", "0", 0, 0},
  };

  /* Compared as "input -> rc value" so a failure names its row. */
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    cfg_t c;
    char err[256], got[128], want[128];
    int rc = load_with(rows[i].var, rows[i].in, &c, err, sizeof err);
    long long v = strcmp(rows[i].var, "AS_T_ANY") == 0 ? c.any : c.batch;

    unsetenv(rows[i].var);
    snprintf(got, sizeof got, "%s=%s -> %d %lld", rows[i].var, rows[i].in, rc, rc ? 0 : v);
    snprintf(want, sizeof want, "%s=%s -> %d %lld", rows[i].var, rows[i].in, rows[i].rc,
             rows[i].want);
    AS_CHECK_STR_EQ(got, want);
    if (rc != 0) AS_CHECK(strncmp(err, rows[i].var, strlen(rows[i].var)) == 0);
  }
}

AS_TEST(int_error_text) {
  cfg_t c;
  char err[256];

  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", "abc", &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_BATCH: must be an integer between 1 and 10000, got \"abc\"");
  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", "10001", &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_BATCH: must be an integer between 1 and 10000, got \"10001\"");
  unsetenv("AS_T_BATCH");
  AS_CHECK_INT_EQ(load_with("AS_T_ANY", "x", &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_ANY: must be an integer, got \"x\"");
}

/* At most 64 bytes of a bad value, non-printables replaced. */
AS_TEST(bad_value_echo_is_bounded) {
  char big[200], err[256];
  cfg_t c;

  memset(big, '7', sizeof big - 1);
  big[sizeof big - 1] = '\0';
  big[1] = '\n';
  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", big, &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err,
                  "AS_T_BATCH: must be an integer between 1 and 10000, got "
                  "\"7?77777777777777777777777777777777777777777777777777777777777777...\"");
  /* A short error buffer is cut, not overflowed. */
  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", "abc", &c, err, 11), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_BATCH");
  AS_CHECK_INT_EQ(load_with("AS_T_BATCH", "abc", &c, NULL, 0), -EINVAL);
}

AS_TEST(bool_values) {
  static const struct {
    const char *in;
    int rc;
    bool want;
  } rows[] = {
      {"1", 0, true},      {"0", 0, false},       {"true", 0, true}, {"false", 0, false},
      {"yes", 0, true},    {"no", 0, false},      {"on", 0, true},   {"off", 0, false},
      {"TRUE", 0, true},   {"Off", 0, false},     {"", 0, false},    {"2", -EINVAL, false},
      {"tru", -EINVAL, 0}, {"true ", -EINVAL, 0}, {"y", -EINVAL, 0}, {"-1", -EINVAL, 0},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    cfg_t c;
    char err[256];

    AS_CHECK_INT_EQ(load_with("AS_T_FLAG", rows[i].in, &c, err, sizeof err), rows[i].rc);
    if (rows[i].rc == 0) AS_CHECK_INT_EQ(c.flag, rows[i].want);
  }
  {
    cfg_t c;
    char err[256];

    load_with("AS_T_FLAG", "maybe", &c, err, sizeof err);
    AS_CHECK_STR_EQ(err, "AS_T_FLAG: must be one of 1/0/true/false/yes/no/on/off, got \"maybe\"");
  }
}

AS_TEST(string_values) {
  static const struct {
    const char *in;
    int rc;
    const char *err;
  } rows[] = {
      {"12345678", 0, ""},
      {"123456789", -EINVAL, "AS_T_NAME: must be at most 8 bytes, got 9"},
      {"订单", 0, ""}, /* 6 bytes of UTF-8 */
      {"订单订", -EINVAL, "AS_T_NAME: must be at most 8 bytes, got 9"},
      {"a\tb", -EINVAL, "AS_T_NAME: must not contain control characters (byte 1 is 0x09)"},
      {"ab\x7f", -EINVAL, "AS_T_NAME: must not contain control characters (byte 2 is 0x7f)"},
      {"\n", -EINVAL, "AS_T_NAME: must not contain control characters (byte 0 is 0x0a)"},
      {"", 0, ""}, /* empty counts as unset: the default */
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    cfg_t c;
    char err[256];

    AS_CHECK_INT_EQ(load_with("AS_T_NAME", rows[i].in, &c, err, sizeof err), rows[i].rc);
    AS_CHECK_STR_EQ(err, rows[i].err);
    if (rows[i].rc == 0) AS_CHECK_STR_EQ(c.name, *rows[i].in != '\0' ? rows[i].in : "intake");
  }
}

/* A string's min, when given, is a minimum length. */
AS_TEST(string_min_length) {
  static const as_cfg_param_t t[] = {
      {"AS_T_ADDR", AS_CFG_STR, "0.0.0.0", 3, 64, 0, "Listen address."},
      {"AS_T_NOMAX", AS_CFG_STR, "abc", 2, 0, 0, "At least two."},
  };
  const as_cfg_param_t *tables[] = {t};
  const size_t sizes[] = {2};
  const char *v[2];
  char err[256], *out = NULL;
  size_t len = 0;
  FILE *f;

  AS_CHECK_INT_EQ(setenv("AS_T_ADDR", "ab", 1), 0);
  AS_CHECK_INT_EQ(as_config_load(t, 1, v, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_ADDR: must be at least 3 bytes, got 2");
  AS_CHECK_INT_EQ(setenv("AS_T_ADDR", "::1", 1), 0);
  AS_CHECK_INT_EQ(as_config_load(t, 1, v, err, sizeof err), 0);
  AS_CHECK_STR_EQ(v[0], "::1");
  f = open_memstream(&out, &len);
  AS_CHECK(f != NULL);
  as_config_help(f, "p", NULL, tables, sizes, 1);
  AS_CHECK_INT_EQ(fclose(f), 0);
  AS_CHECK(strstr(out, "  AS_T_ADDR (string, default \"0.0.0.0\", 3..64 bytes)\n") != NULL);
  AS_CHECK(strstr(out, "  AS_T_NOMAX (string, default \"abc\", at least 2 bytes)\n") != NULL);
  free(out);
}

AS_TEST(required_missing) {
  cfg_t c;
  char err[256];

  unsetenv("AS_T_DSN");
  AS_CHECK_INT_EQ(as_config_load(TABLE, NTABLE, &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_DSN: required but not set");
  AS_CHECK_INT_EQ(setenv("AS_T_DSN", "", 1), 0);
  AS_CHECK_INT_EQ(as_config_load(TABLE, NTABLE, &c, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_DSN: required but not set");
}

/* A table typo fails like a deployment typo. */
AS_TEST(bad_default_in_table) {
  static const as_cfg_param_t bad[] = {
      {"AS_T_BAD", AS_CFG_INT, "0", 1, 10, 0, "x"},
  };
  static const as_cfg_param_t badtype[] = {
      {"AS_T_BAD", (as_cfg_type_t)7, "0", 0, 0, 0, "x"},
  };
  long long v;
  char err[256];

  unsetenv("AS_T_BAD");
  AS_CHECK_INT_EQ(as_config_load(bad, 1, &v, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_BAD: must be an integer between 1 and 10, got \"0\"");
  AS_CHECK_INT_EQ(as_config_load(badtype, 1, &v, err, sizeof err), -EINVAL);
  AS_CHECK_STR_EQ(err, "AS_T_BAD: unknown type 7 in the configuration table");
}

AS_TEST(help_text) {
  const as_cfg_param_t *tables[] = {TABLE, TABLE + 2};
  const size_t sizes[] = {2, 1};
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);

  AS_CHECK(f != NULL);
  as_config_help(f, "as-intake", "Consumes orders.", tables, sizes, 2);
  AS_CHECK_INT_EQ(fclose(f), 0);
  AS_CHECK_STR_EQ(out,
                  "usage: as-intake\n"
                  "Consumes orders.\n"
                  "\n"
                  "Configuration comes from environment variables (empty counts as unset):\n"
                  "  AS_T_BATCH (int, default 500, 1..10000)\n"
                  "      Messages per database transaction.\n"
                  "  AS_T_DSN (string, required)\n"
                  "      PostgreSQL connection string.\n"
                  "  AS_T_FLAG (bool, default false)\n"
                  "      Enable the thing.\n"
                  "  AS_RDKAFKA_<PROP>, AS_RDKAFKA_CONSUMER_<PROP>, AS_RDKAFKA_PRODUCER_<PROP>\n"
                  "      Passed to librdkafka as <prop>, lower case with '_' -> '.': to every\n"
                  "      client, to the consumer only, or to the producers only (the scoped\n"
                  "      value wins), e.g. AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS=6000 sets\n"
                  "      session.timeout.ms=6000 on the consumer.\n");
  free(out);
}

AS_TEST(help_multiline_and_string_bounds) {
  static const as_cfg_param_t t[] = {
      {"AS_T_NAME", AS_CFG_STR, "intake", 0, 8, 0, "First line.\nSecond line."},
      {"AS_T_ANY", AS_CFG_INT, "-1", 0, 0, 0, NULL},
  };
  const as_cfg_param_t *tables[] = {t};
  const size_t sizes[] = {2};
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);

  AS_CHECK(f != NULL);
  as_config_help(f, "p", NULL, tables, sizes, 1);
  AS_CHECK_INT_EQ(fclose(f), 0);
  AS_CHECK(strstr(out,
                  "  AS_T_NAME (string, default \"intake\", at most 8 bytes)\n"
                  "      First line.\n"
                  "      Second line.\n"
                  "  AS_T_ANY (int, default -1)\n"
                  "  AS_RDKAFKA_") != NULL);
  free(out);
}

/* --- rdkafka pass-through ------------------------------------------------- */

typedef struct {
  char seen[512];
  int calls;
  int fail_at; /* call number that returns -EIO, 0 = never */
} sink_t;

static int sink_set(void *arg, const char *prop, const char *value, char *err, size_t errlen) {
  sink_t *s = arg;
  size_t used = strlen(s->seen);

  s->calls++;
  if (s->calls == s->fail_at) {
    snprintf(err, errlen, "%s: refused", prop);
    return -EIO;
  }
  snprintf(s->seen + used, sizeof s->seen - used, "%s%s=%s", used ? ";" : "", prop, value);
  return 0;
}

/* Only this case's AS_RDKAFKA_* variables should be visible. */
static void clear_rdkafka_env(void) {
  char name[256];

  for (size_t i = 0; environ[i] != NULL;) {
    if (strncmp(environ[i], "AS_RDKAFKA_", 11) == 0) {
      snprintf(name, sizeof name, "%.*s", (int)strcspn(environ[i], "="), environ[i]);
      AS_CHECK_INT_EQ(unsetenv(name), 0);
      i = 0; /* unsetenv reshuffles environ */
      continue;
    }
    i++;
  }
}

AS_TEST(rdkafka_names_mapped) {
  sink_t s = {.seen = "", .calls = 0, .fail_at = 0};
  char err[256] = "";

  clear_rdkafka_env();
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_SESSION_TIMEOUT_MS", "6000", 1), 0);
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), 0);
  AS_CHECK_STR_EQ(s.seen, "session.timeout.ms=6000");
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_X509", "a=b", 1), 0); /* '=' in a value is fine */
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKAX", "not ours", 1), 0);
  AS_CHECK_INT_EQ(setenv("AS_T_OTHER", "not ours", 1), 0);
  s.seen[0] = '\0';
  s.calls = 0;
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), 0);
  AS_CHECK_INT_EQ(s.calls, 2);
  AS_CHECK(strstr(s.seen, "session.timeout.ms=6000") != NULL);
  AS_CHECK(strstr(s.seen, "x509=a=b") != NULL);
  clear_rdkafka_env();
  s.calls = 0;
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), 0);
  AS_CHECK_INT_EQ(s.calls, 0);
}

AS_TEST(rdkafka_bad_names) {
  static const char *const bad[] = {
      "AS_RDKAFKA_session_timeout_ms",
      "AS_RDKAFKA_",
      "AS_RDKAFKA_A-B",
      "AS_RDKAFKA__X",
      "AS_RDKAFKA_X_",
      "AS_RDKAFKA_X__Y",
      "AS_RDKAFKA_X.Y",
      "AS_RDKAFKA_\xc3\x89T\xc3\x89",
  };

  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    sink_t s = {.seen = "", .calls = 0, .fail_at = 0};
    char err[256] = "", want[256];

    clear_rdkafka_env();
    AS_CHECK_INT_EQ(setenv(bad[i], "secret-value", 1), 0);
    AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), -EINVAL);
    AS_CHECK_INT_EQ(s.calls, 0);
    AS_CHECK(strstr(err, "secret-value") == NULL);
    snprintf(want, sizeof want, "%s: after AS_RDKAFKA_ only", bad[i]);
    if (i < 7)
      AS_CHECK(strncmp(err, want, strlen(want)) == 0);
    else
      AS_CHECK(strncmp(err, "AS_RDKAFKA_??T??: after", 23) == 0);
  }
}

/* A very long name: the echo is cut, the value never shown. */
AS_TEST(rdkafka_long_name) {
  char name[400];
  sink_t s = {.seen = "", .calls = 0, .fail_at = 0};
  char err[256] = "";

  clear_rdkafka_env();
  memset(name, 'A', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  memcpy(name, "AS_RDKAFKA_", 11);
  AS_CHECK_INT_EQ(setenv(name, "secret-value", 1), 0);
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), -EINVAL);
  AS_CHECK(strstr(err, "secret") == NULL);
  AS_CHECK(strstr(err, "AAA...: after") != NULL);
}

AS_TEST(rdkafka_set_error_stops) {
  sink_t s = {.seen = "", .calls = 0, .fail_at = 1};
  char err[256] = "";

  clear_rdkafka_env();
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_A", "1", 1), 0);
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_B", "2", 1), 0);
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), -EIO);
  AS_CHECK_INT_EQ(s.calls, 1);
  AS_CHECK(strcmp(err, "a: refused") == 0 || strcmp(err, "b: refused") == 0);
}

/* A consumer property never reaches a producer and the other way round;
 * a scoped value comes after (so overrides) a shared one. */
AS_TEST(rdkafka_scoped) {
  sink_t s = {.seen = "", .calls = 0, .fail_at = 0};
  char err[256] = "";

  clear_rdkafka_env();
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_SOCKET_TIMEOUT_MS", "1000", 1), 0);
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_CONSUMER_SESSION_TIMEOUT_MS", "6000", 1), 0);
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_PRODUCER_LINGER_MS", "0", 1), 0);
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_PRODUCER_SOCKET_TIMEOUT_MS", "2000", 1), 0);
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, AS_RDKAFKA_CONSUMER, err, sizeof err), 0);
  AS_CHECK_STR_EQ(s.seen, "socket.timeout.ms=1000;session.timeout.ms=6000");
  s.seen[0] = '\0';
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, AS_RDKAFKA_PRODUCER, err, sizeof err), 0);
  AS_CHECK(strncmp(s.seen, "socket.timeout.ms=1000;", 23) == 0);
  AS_CHECK(strstr(s.seen, "linger.ms=0") != NULL);
  AS_CHECK(strstr(s.seen, "socket.timeout.ms=2000") != NULL);
  AS_CHECK(strstr(s.seen, "session") == NULL);
  s.seen[0] = '\0';
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, NULL, err, sizeof err), 0);
  AS_CHECK_STR_EQ(s.seen, "socket.timeout.ms=1000");
  AS_CHECK(as_config_rdkafka_given(AS_RDKAFKA_PRODUCER, "LINGER_MS"));
  AS_CHECK(!as_config_rdkafka_given(AS_RDKAFKA_CONSUMER, "LINGER_MS"));
  AS_CHECK_INT_EQ(setenv("AS_RDKAFKA_CONSUMER_x", "1", 1), 0);
  AS_CHECK_INT_EQ(as_config_each_rdkafka(sink_set, &s, AS_RDKAFKA_CONSUMER, err, sizeof err),
                  -EINVAL);
  AS_CHECK(strstr(err, "after AS_RDKAFKA_CONSUMER_ only") != NULL);
  clear_rdkafka_env();
}
