/* Unit tests for as_buf: appends, printf, hex, reset and the failure flag in
 * memory; then the array literals the bulk statements are built from, which
 * only PostgreSQL can judge: every literal here is parsed by the server
 * ($1::text[]) and its elements compared one by one with what went in. */
#include "as_buf.h"
#include "as_test.h"
#include "as_test_pg.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

AS_TEST(empty_buffer) {
  as_buf_t b;

  as_buf_init(&b);
  AS_CHECK_STR_EQ(as_buf_str(&b), "");
  AS_CHECK_INT_EQ(b.len, 0);
  AS_CHECK(as_buf_ok(&b));
  as_buf_free(&b);
  as_buf_free(&b); /* twice is fine: free leaves an empty buffer */
  AS_CHECK_STR_EQ(as_buf_str(&b), "");
}

AS_TEST(appends) {
  as_buf_t b;

  as_buf_init(&b);
  as_buf_append(&b, "ab", 2);
  as_buf_append(&b, "", 0);
  as_buf_puts(&b, "cd");
  as_buf_append(&b, "e\0f", 3); /* bytes, NULs included */
  AS_CHECK_INT_EQ(b.len, 7);
  AS_CHECK_MEM_EQ(b.data, b.len, "abcde\0f", 7);
  AS_CHECK_INT_EQ(b.data[b.len], '\0');
  AS_CHECK(as_buf_ok(&b));
  as_buf_free(&b);
  AS_CHECK(b.data == NULL);
  AS_CHECK_INT_EQ(b.len, 0);
}

/* Growth across the first capacity and many doublings keeps every byte. */
AS_TEST(grows) {
  as_buf_t b;
  char want[100001];

  as_buf_init(&b);
  for (int i = 0; i < 100000; i++) {
    char c = (char)('a' + i % 26);
    want[i] = c;
    as_buf_append(&b, &c, 1);
  }
  want[100000] = '\0';
  AS_CHECK(as_buf_ok(&b));
  AS_CHECK_INT_EQ(b.len, 100000);
  AS_CHECK(b.cap > b.len);
  AS_CHECK_MEM_EQ(as_buf_str(&b), b.len + 1, want, sizeof want);
  as_buf_free(&b);
}

AS_TEST(printf_appends) {
  as_buf_t b;
  char big[1001];

  as_buf_init(&b);
  as_buf_printf(&b, "%d-%s", 42, "x");
  as_buf_printf(&b, "%s", "");
  as_buf_printf(&b, "|%05.1f|%lld", 3.14159, -9223372036854775807LL - 1);
  AS_CHECK_STR_EQ(as_buf_str(&b), "42-x|003.1|-9223372036854775808");
  AS_CHECK_INT_EQ(b.len, strlen("42-x|003.1|-9223372036854775808"));

  /* Longer than the first capacity in one call. */
  memset(big, 'z', 1000);
  big[1000] = '\0';
  as_buf_reset(&b);
  as_buf_printf(&b, "<%s>", big);
  AS_CHECK_INT_EQ(b.len, 1002);
  AS_CHECK_INT_EQ(b.data[0], '<');
  AS_CHECK_INT_EQ(b.data[1001], '>');
  AS_CHECK_INT_EQ(b.data[1002], '\0');
  AS_CHECK(as_buf_ok(&b));
  as_buf_free(&b);
}

AS_TEST(hex) {
  static const uint8_t bytes[] = {0x00, 0x01, 0x7f, 0x80, 0xab, 0xff};
  as_buf_t b;

  as_buf_init(&b);
  as_buf_hex(&b, bytes, 0);
  AS_CHECK_STR_EQ(as_buf_str(&b), "");
  as_buf_puts(&b, "\\x");
  as_buf_hex(&b, bytes, sizeof bytes);
  AS_CHECK_STR_EQ(as_buf_str(&b), "\\x00017f80abff");
  AS_CHECK_INT_EQ(b.len, 14);
  as_buf_free(&b);
}

AS_TEST(reset_keeps_memory) {
  as_buf_t b;

  as_buf_init(&b);
  as_buf_puts(&b, "hello");
  char *data = b.data;
  size_t cap = b.cap;
  as_buf_reset(&b);
  AS_CHECK_INT_EQ(b.len, 0);
  AS_CHECK_STR_EQ(as_buf_str(&b), "");
  AS_CHECK(b.data == data);
  AS_CHECK_INT_EQ(b.cap, cap);
  as_buf_puts(&b, "x");
  AS_CHECK_STR_EQ(as_buf_str(&b), "x");
  as_buf_free(&b);

  /* Reset of a never-used buffer. */
  as_buf_init(&b);
  as_buf_reset(&b);
  AS_CHECK_STR_EQ(as_buf_str(&b), "");
}

/* A failed buffer ignores appends until reset (one check at the end of a
 * sequence is enough). The failure is forced through the public field. */
AS_TEST(failed_buffer_is_sticky) {
  as_buf_t b;
  static const uint8_t one = 1;

  as_buf_init(&b);
  as_buf_puts(&b, "kept");
  b.failed = true;
  as_buf_puts(&b, "lost");
  as_buf_printf(&b, "%d", 5);
  as_buf_hex(&b, &one, 1);
  as_buf_arr_str(&b, "x");
  AS_CHECK(!as_buf_ok(&b));
  AS_CHECK_STR_EQ(as_buf_str(&b), "kept");
  AS_CHECK_INT_EQ(b.len, 4);
  as_buf_reset(&b);
  AS_CHECK(as_buf_ok(&b));
  as_buf_puts(&b, "again");
  AS_CHECK_STR_EQ(as_buf_str(&b), "again");
  as_buf_free(&b);
}

AS_TEST(array_literal_text) {
  as_buf_t b;

  as_buf_init(&b);
  as_buf_arr_open(&b);
  as_buf_arr_close(&b);
  AS_CHECK_STR_EQ(as_buf_str(&b), "{}");
  as_buf_reset(&b);
  as_buf_arr_open(&b);
  as_buf_arr_str(&b, "a");
  as_buf_arr_str(&b, "");
  as_buf_arr_str(&b, "q\"b\\");
  as_buf_arr_raw(&b, "12", 2);
  as_buf_arr_close(&b);
  AS_CHECK_STR_EQ(as_buf_str(&b), "{\"a\",\"\",\"q\\\"b\\\\\",12}");
  as_buf_free(&b);
}

/* Elements that need quoting in an array literal, each round-tripped. */
static const char *const TRICKY[] = {
    "plain",
    "",
    "with,comma",
    "{brace}",
    "}",
    "{",
    "quote\"inside",
    "\"",
    "\"\"",
    "back\\slash",
    "\\",
    "\\\"",
    "trailing\\",
    "NULL", /* quoted: the text NULL, not SQL NULL */
    "null",
    " leading and trailing spaces ",
    "tab\there",
    "new\nline",
    "caf\xc3\xa9 \xe4\xb8\xad\xe6\x96\x87",
    "a,b{c}d\"e\\f'g",
    "''",
    "$1",
};
#define NTRICKY (sizeof TRICKY / sizeof TRICKY[0])

/* Sends literal as $1::text[] and checks the server's elements equal want. */
static void check_roundtrip(PGconn *c, const char *literal, const char *const *want, size_t n) {
  const char *vals[1] = {literal};
  PGresult *r = AS_PG_Q(c,
                        "SELECT u, u IS NULL FROM unnest($1::text[]) WITH ORDINALITY AS t(u, o)"
                        " ORDER BY o",
                        1, vals);
  AS_CHECK_INT_EQ(PQntuples(r), n);
  for (size_t i = 0; i < n; i++) {
    AS_CHECK_STR_EQ(PQgetvalue(r, (int)i, 1), "f");
    AS_CHECK_STR_EQ(PQgetvalue(r, (int)i, 0), want[i]);
  }
  PQclear(r);
  AS_CHECK_INT_EQ(AS_PG_INT(c, "SELECT cardinality($1::text[])", 1, vals), n);
}

AS_TEST(array_literal_roundtrips_through_postgres) {
  PGconn *c = as_test_pg_connect();
  as_buf_t b;

  as_buf_init(&b);
  as_buf_arr_open(&b);
  for (size_t i = 0; i < NTRICKY; i++) as_buf_arr_str(&b, TRICKY[i]);
  as_buf_arr_close(&b);
  AS_CHECK(as_buf_ok(&b));
  check_roundtrip(c, as_buf_str(&b), TRICKY, NTRICKY);

  /* Each alone, too: first and last positions have no separator around. */
  for (size_t i = 0; i < NTRICKY; i++) {
    as_buf_reset(&b);
    as_buf_arr_open(&b);
    as_buf_arr_str(&b, TRICKY[i]);
    as_buf_arr_close(&b);
    check_roundtrip(c, as_buf_str(&b), &TRICKY[i], 1);
  }

  /* The empty array. */
  as_buf_reset(&b);
  as_buf_arr_open(&b);
  as_buf_arr_close(&b);
  check_roundtrip(c, as_buf_str(&b), NULL, 0);

  /* One empty string is an element, not an empty array. */
  static const char *const one_empty[] = {""};
  as_buf_reset(&b);
  as_buf_arr_open(&b);
  as_buf_arr_str(&b, "");
  as_buf_arr_close(&b);
  check_roundtrip(c, as_buf_str(&b), one_empty, 1);
  as_buf_free(&b);
  PQfinish(c);
}

/* A literal of many elements, as a batch of 5000 outbox rows builds. */
AS_TEST(array_literal_many_elements) {
  PGconn *c = as_test_pg_connect();
  enum { N = 5000 };
  as_buf_t b;

  as_buf_init(&b);
  as_buf_arr_open(&b);
  for (int i = 0; i < N; i++) {
    char s[32];
    snprintf(s, sizeof s, "k,\"%d\"", i);
    as_buf_arr_str(&b, s);
  }
  as_buf_arr_close(&b);
  const char *vals[1] = {as_buf_str(&b)};
  AS_CHECK_INT_EQ(AS_PG_INT(c, "SELECT cardinality($1::text[])", 1, vals), N);
  char last[64];
  AS_PG_STR(c, "SELECT ($1::text[])[5000]", 1, vals, last);
  AS_CHECK_STR_EQ(last, "k,\"4999\"");
  AS_PG_STR(c, "SELECT ($1::text[])[1]", 1, vals, last);
  AS_CHECK_STR_EQ(last, "k,\"0\"");
  as_buf_free(&b);
  PQfinish(c);
}

/* Raw elements: numbers and hex as the inbox and outbox statements send
 * them (the element types come from the cast). */
AS_TEST(array_literal_raw_elements) {
  PGconn *c = as_test_pg_connect();
  as_buf_t ints, hex;
  static const uint8_t p1[] = {0x00, 0xff}, p2[] = {'h', 'i'};

  as_buf_init(&ints);
  as_buf_arr_open(&ints);
  as_buf_arr_raw(&ints, "-1", 2);
  as_buf_arr_raw(&ints, "2", 1);
  as_buf_arr_raw(&ints, "9223372036854775807", 19);
  as_buf_arr_close(&ints);
  const char *v1[1] = {as_buf_str(&ints)};
  char got[128];
  AS_PG_STR(c, "SELECT array_to_string($1::bigint[], '|')", 1, v1, got);
  AS_CHECK_STR_EQ(got, "-1|2|9223372036854775807");

  /* As as_tx queues payloads: an empty raw element, then the hex. */
  as_buf_init(&hex);
  as_buf_arr_open(&hex);
  as_buf_arr_raw(&hex, "", 0);
  as_buf_hex(&hex, p1, sizeof p1);
  as_buf_arr_raw(&hex, "", 0);
  as_buf_hex(&hex, p2, sizeof p2);
  as_buf_arr_close(&hex);
  AS_CHECK_STR_EQ(as_buf_str(&hex), "{00ff,6869}");
  const char *v2[1] = {as_buf_str(&hex)};
  AS_PG_STR(c,
            "SELECT string_agg(encode(decode(p, 'hex'), 'escape'), '|' ORDER BY o)"
            " FROM unnest($1::text[]) WITH ORDINALITY AS t(p, o)",
            1, v2, got);
  AS_CHECK_STR_EQ(got, "\\000\\377|hi");
  as_buf_free(&ints);
  as_buf_free(&hex);
  PQfinish(c);
}

/* The binary bytea[] is judged by the server too: every element, with NUL
 * and 0xff bytes and an empty one, comes back as it went in (hex of each
 * element compared), in order, with the right count. */
AS_TEST(binary_bytea_array_roundtrips_through_postgres) {
  PGconn *c = as_test_pg_connect();
  static const struct {
    const char *bytes;
    size_t n;
    const char *hex;
  } el[] = {
      {"", 0, ""}, {"a\0b", 3, "610062"}, {"\xff\x00\x01", 3, "ff0001"}, {"xyz", 3, "78797a"}};
  as_buf_t b;
  as_buf_init(&b);
  as_buf_bin_open(&b, AS_OID_BYTEA);
  for (size_t i = 0; i < sizeof el / sizeof el[0]; i++) as_buf_bin_bytes(&b, el[i].bytes, el[i].n);
  as_buf_bin_close(&b);
  AS_CHECK(as_buf_ok(&b));
  const char *vals[1] = {b.data};
  const int lens[1] = {(int)b.len}, fmts[1] = {1};
  PGresult *r =
      PQexecParams(c,
                   "SELECT encode(u, 'hex') FROM unnest($1::bytea[]) WITH ORDINALITY AS t(u, o)"
                   " ORDER BY o",
                   1, NULL, vals, lens, fmts, 0);
  AS_CHECK_INT_EQ(PQresultStatus(r), PGRES_TUPLES_OK);
  AS_CHECK_INT_EQ(PQntuples(r), sizeof el / sizeof el[0]);
  for (int i = 0; i < PQntuples(r); i++) AS_CHECK_STR_EQ(PQgetvalue(r, i, 0), el[i].hex);
  PQclear(r);
  as_buf_free(&b);
  PQfinish(c);
}
