/* Unit tests for as_uuid: the v4 layout (version and variant bits, lower-case
 * hex, dashes) and uniqueness over 10k draws; v8 determinism, separation of
 * namespace and name, and golden values that pin the derivation (dead-letter
 * and refund ids must not change between releases: a changed hash would let
 * a redelivered event through as new); the validity table; canonicalisation;
 * trace ids. The golden values come from an independent Python
 * implementation of MurmurHash3 x64-128 checked against SMHasher's
 * verification value 0x6384BA69. */
#include "as_test.h"
#include "as_uuid.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

AS_TEST(v8_deterministic) {
  char a[AS_UUID_STRLEN + 1], b[AS_UUID_STRLEN + 1];

  as_uuid_v8(a, "aftersales.refund", "case-1|line-2", 13);
  as_uuid_v8(b, "aftersales.refund", "case-1|line-2", 13);
  AS_CHECK_STR_EQ(a, b);
  AS_CHECK_STR_EQ(layout_error(a, '8'), NULL);
  AS_CHECK(as_uuid_valid(a));
}

AS_TEST(v8_inputs_separate) {
  static const struct {
    const char *ns1;
    const char *name1;
    size_t len1;
    const char *ns2;
    const char *name2;
    size_t len2;
  } rows[] = {
      {"ns", "name", 4, "nt", "name", 4},                             /* namespace differs */
      {"ns", "name", 4, "ns", "namf", 4},                             /* name differs */
      {"a", "bc", 2, "ab", "c", 1},                                   /* same concatenation */
      {"", "abc", 3, "abc", "", 0},                                   /* everything on one side */
      {"ns", "x\0y", 3, "ns", "x", 1},                                /* bytes after a NUL count */
      {"ns", "x\0y", 3, "ns", "x\0z", 3},                             /* ... and are hashed */
      {"ns", "", 0, "ns", "\0", 1},                                   /* empty vs one NUL byte */
      {"ns", "0123456789abcdef", 16, "ns", "0123456789abcdeg", 16},   /* last of a block */
      {"ns", "0123456789abcdef0", 17, "ns", "0123456789abcdef1", 17}, /* tail of one */
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char a[AS_UUID_STRLEN + 1], b[AS_UUID_STRLEN + 1], label[64];
    as_uuid_v8(a, rows[i].ns1, rows[i].name1, rows[i].len1);
    as_uuid_v8(b, rows[i].ns2, rows[i].name2, rows[i].len2);
    AS_CHECK_STR_EQ(layout_error(a, '8'), NULL);
    AS_CHECK_STR_EQ(layout_error(b, '8'), NULL);
    if (strcmp(a, b) == 0) {
      snprintf(label, sizeof label, "row %zu: ids differ", i);
      AS_CHECK_STR_EQ(a, label);
    }
  }
}

/* Every name length 0..64 (all tail sizes, several blocks) gives a distinct,
 * well-formed id: the tail handling reads each byte it should. */
AS_TEST(v8_every_tail_length) {
  enum { N = 65 };
  char names[N], ids[N][AS_UUID_STRLEN + 1];
  for (int i = 0; i < N; i++) names[i] = (char)('a' + i % 26);
  for (int n = 0; n < N; n++) {
    as_uuid_v8(ids[n], "lengths", names, (size_t)n);
    AS_CHECK_STR_EQ(layout_error(ids[n], '8'), NULL);
    for (int m = 0; m < n; m++)
      if (strcmp(ids[m], ids[n]) == 0) AS_CHECK_INT_EQ(m, n);
  }
}

AS_TEST(v8_golden_values) {
  static const struct {
    const char *ns, *name;
    size_t len;
    const char *want;
  } rows[] = {
      {"aftersales.deadletter", "aftersales-probe|aftersales.probe.v1|3|12345", 44,
       "71e9575f-2f75-8716-ab16-f1b75a00a7f2"},
      {"a", "bc", 2, "c21e9b56-c4d2-89a8-b27e-862c69f468f4"},
      {"ab", "c", 1, "621fe22e-13f0-881a-b421-6622aa603fea"},
      {"ns", "", 0, "fef6a58d-5cb6-8eb9-8146-172024df5e15"},
      {"refund", "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 37,
       "e93444dd-7af8-8e53-865d-96b2e7060a75"},
      {"n", "x\0y", 3, "13783e27-2baf-8d29-aaf4-1598211ee19f"},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char id[AS_UUID_STRLEN + 1];
    as_uuid_v8(id, rows[i].ns, rows[i].name, rows[i].len);
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
