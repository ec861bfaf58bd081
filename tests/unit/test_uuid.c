/* Unit tests for as_uuid: the v4 layout (version and variant bits, lower-case
 * hex, dashes) and uniqueness over 10k draws; v5 determinism, separation of
 * namespace and name, and known answers that pin the derivation (dead-letter
 * and refund ids must not change between releases: a changed id would let a
 * redelivered event through as new, and finance recomputes refund ids with
 * any uuid5); the validity table; canonicalisation; trace ids. The known
 * answers come from /usr/bin/python3's uuid module:
 *   ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
 *   uuid.uuid5(uuid.uuid5(ROOT, ns), name)
 * (for names that are not UTF-8, the same SHA-1 through hashlib and
 * uuid.UUID(bytes=digest[:16], version=5)). */
#include "as_test.h"
#include "as_uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uuid/uuid.h>

static bool is_lower_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
}

/* Canonical lower-case 8-4-4-4-12 with the given version nibble and the
 * RFC 9562 variant (10xx). Returns a description of what is wrong, or NULL. */
static const char *layout_error(const char *s, char version) {
  if (strlen(s) != AS_UUID_STRLEN) return "length";
  for (int i = 0; i < AS_UUID_STRLEN; i++) {
    int dash = i == 8 || i == 13 || i == 18 || i == 23;
    if (dash ? s[i] != '-' : !is_lower_hex(s[i])) return "character";
  }
  if (s[14] != version) return "version";
  if (strchr("89ab", s[19]) == NULL) return "variant";
  return NULL;
}

AS_TEST(v4_layout) {
  for (int i = 0; i < 1000; i++) {
    char id[AS_UUID_STRLEN + 1];
    memset(id, 'X', sizeof id);
    AS_CHECK_INT_EQ(as_uuid_v4(id), 0);
    AS_CHECK_STR_EQ(layout_error(id, '4'), NULL);
    AS_CHECK(as_uuid_valid(id));
  }
}

static int cmp_id(const void *a, const void *b) {
  return memcmp(a, b, AS_UUID_STRLEN + 1);
}

AS_TEST(v4_unique_over_10k) {
  enum { N = 10000 };
  char(*ids)[AS_UUID_STRLEN + 1] = malloc(N * sizeof *ids);
  AS_CHECK(ids != NULL);
  unsigned variants[4] = {0};

  for (int i = 0; i < N; i++) {
    AS_CHECK_INT_EQ(as_uuid_v4(ids[i]), 0);
    AS_CHECK_STR_EQ(layout_error(ids[i], '4'), NULL);
    variants[strchr("89ab", ids[i][19]) - "89ab"]++;
  }
  qsort(ids, N, sizeof *ids, cmp_id);
  for (int i = 1; i < N; i++)
    if (strcmp(ids[i - 1], ids[i]) == 0) AS_CHECK_STR_EQ(ids[i - 1], "(a duplicate)");
  /* The two random bits after the variant are random: all four values show
   * up in 10k draws (each with probability 1/4; missing one is ~1e-1249). */
  for (int v = 0; v < 4; v++) AS_CHECK(variants[v] > 2000);
  free(ids);
}

AS_TEST(v5_deterministic) {
  char a[AS_UUID_STRLEN + 1], b[AS_UUID_STRLEN + 1];

  memset(a, 'X', sizeof a);
  as_uuid_v5(a, "aftersales.refund", "case-1|line-2", 13);
  as_uuid_v5(b, "aftersales.refund", "case-1|line-2", 13);
  AS_CHECK_STR_EQ(a, b);
  AS_CHECK_STR_EQ(layout_error(a, '5'), NULL);
  AS_CHECK(as_uuid_valid(a));
}

AS_TEST(v5_inputs_separate) {
  static const struct {
    const char *ns1;
    const char *name1;
    size_t len1;
    const char *ns2;
    const char *name2;
    size_t len2;
  } rows[] = {
      {"ns", "name", 4, "nt", "name", 4},                         /* namespace differs */
      {"ns", "name", 4, "ns", "namf", 4},                         /* name differs */
      {"a", "bc", 2, "ab", "c", 1},                               /* same concatenation */
      {"", "abc", 3, "abc", "", 0},                               /* everything on one side */
      {"ns", "x\0y", 3, "ns", "x", 1},                            /* bytes after a NUL count */
      {"ns", "x\0y", 3, "ns", "x\0z", 3},                         /* ... and are hashed */
      {"ns", "", 0, "ns", "\0", 1},                               /* empty vs one NUL byte */
      {"aftersales.refund", "c", 1, "aftersales.coupon", "c", 1}, /* one case, two ids */
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char a[AS_UUID_STRLEN + 1], b[AS_UUID_STRLEN + 1], label[64];
    as_uuid_v5(a, rows[i].ns1, rows[i].name1, rows[i].len1);
    as_uuid_v5(b, rows[i].ns2, rows[i].name2, rows[i].len2);
    AS_CHECK_STR_EQ(layout_error(a, '5'), NULL);
    AS_CHECK_STR_EQ(layout_error(b, '5'), NULL);
    if (strcmp(a, b) == 0) {
      snprintf(label, sizeof label, "row %zu: ids differ", i);
      AS_CHECK_STR_EQ(a, label);
    }
  }
}

/* Every name length 0..64 gives a distinct, well-formed id: all len bytes
 * are hashed, no more. */
AS_TEST(v5_every_length) {
  enum { N = 65 };
  char names[N + 1], ids[N][AS_UUID_STRLEN + 1];
  for (int i = 0; i <= N; i++) names[i] = (char)('a' + i % 26);
  for (int n = 0; n < N; n++) {
    as_uuid_v5(ids[n], "lengths", names, (size_t)n);
    AS_CHECK_STR_EQ(layout_error(ids[n], '5'), NULL);
    for (int m = 0; m < n; m++)
      if (strcmp(ids[m], ids[n]) == 0) AS_CHECK_INT_EQ(m, n);
  }
}

/* libuuid's SHA-1 UUIDs are RFC 4122 version 5: the RFC's / Python's
 * documented example, uuid5(NAMESPACE_DNS, "python.org"). */
AS_TEST(v5_primitive_is_standard) {
  uuid_t b;
  char id[AS_UUID_STRLEN + 1];
  uuid_generate_sha1(b, *uuid_get_template("dns"), "python.org", 10);
  uuid_unparse_lower(b, id);
  AS_CHECK_STR_EQ(id, "886313e1-3b8a-5372-9b90-0c9aee199e5d");
  uuid_generate_sha1(b, *uuid_get_template("url"), "https://www.python.org/", 23);
  uuid_unparse_lower(b, id);
  AS_CHECK_STR_EQ(id, "5406f80d-92e9-51cd-a176-77445955e733");
}

/* The namespace scheme as as_uuid.h documents it, rebuilt from the standard
 * URL namespace: ROOT = uuid5(NAMESPACE_URL, "urn:aftersales"), then
 * uuid5(uuid5(ROOT, ns), name). */
AS_TEST(v5_namespace_scheme) {
  static const char *const ns[] = {"aftersales.refund", "aftersales.deadletter", "", "x"};
  uuid_t root, nsu, b;
  char want[AS_UUID_STRLEN + 1], got[AS_UUID_STRLEN + 1];
  uuid_generate_sha1(root, *uuid_get_template("url"), "urn:aftersales", 14);
  uuid_unparse_lower(root, want);
  AS_CHECK_STR_EQ(want, "a1d6b285-f6cf-56a1-a505-0d3655a064fa");
  for (size_t i = 0; i < sizeof ns / sizeof ns[0]; i++) {
    uuid_generate_sha1(nsu, root, ns[i], strlen(ns[i]));
    uuid_generate_sha1(b, nsu, "case-1", 6);
    uuid_unparse_lower(b, want);
    as_uuid_v5(got, ns[i], "case-1", 6);
    AS_CHECK_STR_EQ(got, want);
  }
}

/* Known answers from Python (see the file comment). */
AS_TEST(v5_known_answers) {
  static const struct {
    const char *ns, *name;
    size_t len;
    const char *want;
  } rows[] = {
      {"aftersales.deadletter", "aftersales-probe|aftersales.probe.v1|3|12345", 44,
       "f47117ba-26fe-5c55-9c0e-da76998300af"},
      {"aftersales.refund", "case-1", 6, "62239fb2-3264-5818-9a2e-793ca683442f"},
      {"aftersales.case", "buyer-1|key-1", 13, "d17af31d-a515-56ea-a745-dd18857001a4"},
      {"aftersales.case_state_changed", "case-1|1", 8, "4a0ca100-14fc-5cbe-85c6-7d9935676edb"},
      {"a", "bc", 2, "dc1deff4-921a-54f4-9b9d-7a3a9d899bbb"},
      {"ab", "c", 1, "436d25b1-e0b5-58a7-991d-5ed699f10b0b"},
      {"ns", "", 0, "b4d1a54c-6730-5e93-84a3-c74e85592444"},
      {"", "", 0, "9f4a0b36-6b2e-5e8c-b5e9-877d12f66638"},
      {"n", "x\0y", 3, "8340d23f-9ff8-582e-867c-b55e03cc7f53"},
      {"n", "\0", 1, "4ec80582-f2cf-5bc2-a4d7-3ab4560940a5"},
      {"n", "\xff\0\x80", 3, "b5e07f37-701f-595f-a904-e57f69e7819c"},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char id[AS_UUID_STRLEN + 1];
    as_uuid_v5(id, rows[i].ns, rows[i].name, rows[i].len);
    AS_CHECK_STR_EQ(id, rows[i].want);
  }
}

AS_TEST(valid_table) {
  static const struct {
    const char *in;
    bool ok;
  } rows[] = {
      {"123e4567-e89b-42d3-a456-426614174000", true},
      {"00000000-0000-0000-0000-000000000000", true},
      {"ffffffff-ffff-ffff-ffff-ffffffffffff", true},
      {"123E4567-E89B-42D3-A456-426614174000", true}, /* upper case is accepted */
      {"123e4567-E89B-42d3-A456-426614174000", true}, /* mixed */
      {"", false},
      {"123e4567-e89b-42d3-a456-42661417400", false},   /* 35 */
      {"123e4567-e89b-42d3-a456-4266141740000", false}, /* 37 */
      {"123e4567e89b42d3a456426614174000", false},      /* no dashes */
      {"123e4567-e89b-42d3-a456426614174000-", false},  /* dash moved to the end */
      {"123e456-7e89b-42d3-a456-426614174000", false},  /* first dash one early */
      {"123e45678-e89-b42d3-a456-426614174000", false}, /* 37 with shifted dashes */
      {"123e4567-e89b-42d3-a4564-26614174000", false},  /* last dash one late */
      {"123e4567_e89b_42d3_a456_426614174000", false},  /* underscores */
      {"123e4567-e89b-42d3-a456-42661417400g", false},  /* g */
      {"123e4567-e89b-42d3-a456-42661417400G", false},  /* G */
      {"123e4567-e89b-42d3-a456-42661417400 ", false},  /* space */
      {"{23e4567-e89b-42d3-a456-42661417400}", false},  /* braces */
      {"123e4567-e89b-42d3-a456-4266141740-0", false},  /* dash where hex goes */
      {"------------------------------------", false},
  };

  AS_CHECK(!as_uuid_valid(NULL));
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char got[80], want[80];
    snprintf(got, sizeof got, "%s -> %d", rows[i].in, as_uuid_valid(rows[i].in));
    snprintf(want, sizeof want, "%s -> %d", rows[i].in, rows[i].ok);
    AS_CHECK_STR_EQ(got, want);
  }
  /* A NUL inside: strlen sees 8 characters. */
  AS_CHECK(!as_uuid_valid("123e4567\0-e89b-42d3-a456-426614174000"));
}

AS_TEST(canonicalise) {
  char a[] = "123E4567-E89B-42D3-A456-4266141740FF";
  char b[] = "123e4567-e89b-42d3-a456-4266141740ff";
  char empty[] = "";

  as_uuid_canonicalise(a);
  AS_CHECK_STR_EQ(a, "123e4567-e89b-42d3-a456-4266141740ff");
  as_uuid_canonicalise(b);
  AS_CHECK_STR_EQ(b, "123e4567-e89b-42d3-a456-4266141740ff");
  AS_CHECK(as_uuid_valid(a));
  as_uuid_canonicalise(empty);
  AS_CHECK_STR_EQ(empty, "");
}

AS_TEST(trace_id) {
  char a[33], b[33];

  memset(a, 'X', sizeof a);
  AS_CHECK_INT_EQ(as_uuid_trace_id(a), 0);
  AS_CHECK_INT_EQ(strlen(a), 32);
  for (int i = 0; i < 32; i++) AS_CHECK(is_lower_hex(a[i]));
  AS_CHECK(strcmp(a, "00000000000000000000000000000000") != 0);
  AS_CHECK_INT_EQ(as_uuid_trace_id(b), 0);
  AS_CHECK(strcmp(a, b) != 0);
}
