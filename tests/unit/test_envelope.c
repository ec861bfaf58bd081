/* Unit tests for as_envelope: real protobuf-c envelopes, packed and decoded.
 * A valid envelope decodes; each breach of the shared contract (README
 * "Message envelope") is refused with its AS_DLQ_* reason and detail; bytes
 * that are no Envelope are decode_failed; a string with a NUL byte or not
 * strict UTF-8, in any field at any depth, is string_nul / invalid_utf8 with
 * its field path (protobuf-c alone takes both); ids are canonicalised; stamping
 * fills identity, keeps a caller's event id and carries trace and causation
 * over from the cause. */
#include "as_envelope.h"
#include "as_test.h"
#include "as_uuid.h"
#include "as_wire.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TIME_MIN_US 946684800000000LL  /* 2000-01-01 */
#define TIME_MAX_US 7258118400000000LL /* 2200-01-01 */

/* A valid envelope and the storage its pointers use. */
typedef struct fixture {
  as_envelope_t env;
  Aftersales__V1__Producer producer;
  Aftersales__V1__CaseOpened opened;
  Aftersales__V1__DeadLetter dead;
  Aftersales__V1__BuyerContactUpdated contact;
  Aftersales__V1__BuyerErased erased;
  char event_id[40], trace_id[40], causation_id[40];
  char case_id[80], order_id[80];
} fixture_t;

static void fixture_init(fixture_t *f) {
  memset(f, 0, sizeof *f);
  aftersales__v1__envelope__init(&f->env);
  aftersales__v1__producer__init(&f->producer);
  aftersales__v1__case_opened__init(&f->opened);
  aftersales__v1__dead_letter__init(&f->dead);
  aftersales__v1__buyer_contact_updated__init(&f->contact);
  aftersales__v1__buyer_erased__init(&f->erased);
  snprintf(f->event_id, sizeof f->event_id, "123e4567-e89b-42d3-a456-426614174000");
  snprintf(f->trace_id, sizeof f->trace_id, "0123456789abcdef0123456789abcdef");
  snprintf(f->case_id, sizeof f->case_id, "AS-20261123-000042");
  f->producer.service = "intake";
  f->producer.instance = "intake-1";
  f->opened.case_id = f->case_id;
  f->env.event_id = f->event_id;
  f->env.event_type = "CaseOpened";
  f->env.schema_version = 1;
  f->env.case_id = f->case_id;
  f->env.occurred_at_us = 1763900000000000LL; /* 2025-11-23 */
  f->env.producer = &f->producer;
  f->env.trace_id = f->trace_id;
  f->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED;
  f->env.case_opened = &f->opened;
}

/* Packs env into a malloc'd buffer (free it). */
static uint8_t *pack(const as_envelope_t *env, size_t *len) {
  *len = aftersales__v1__envelope__get_packed_size(env);
  uint8_t *buf = malloc(*len + 1);
  AS_CHECK(buf != NULL);
  AS_CHECK_INT_EQ(aftersales__v1__envelope__pack(env, buf), *len);
  return buf;
}

/* Packs and decodes; returns the decoded envelope or NULL with reason and
 * detail filled. */
static as_envelope_t *roundtrip(const as_envelope_t *env, const char **reason, char *detail,
                                size_t detail_len) {
  size_t len;
  uint8_t *buf = pack(env, &len);
  *reason = "(unset)";
  detail[0] = '\0';
  as_envelope_t *out = as_envelope_decode(buf, len, reason, detail, detail_len);
  free(buf);
  return out;
}

AS_TEST(valid_envelope_decodes) {
  fixture_t f;
  const char *reason;
  char detail[256];

  fixture_init(&f);
  as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(env != NULL);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK_STR_EQ(env->event_id, "123e4567-e89b-42d3-a456-426614174000");
  AS_CHECK_STR_EQ(env->event_type, "CaseOpened");
  AS_CHECK_INT_EQ(env->schema_version, 1);
  AS_CHECK_STR_EQ(env->case_id, "AS-20261123-000042");
  AS_CHECK_INT_EQ(env->occurred_at_us, 1763900000000000LL);
  AS_CHECK_STR_EQ(env->producer->service, "intake");
  AS_CHECK_STR_EQ(env->producer->instance, "intake-1");
  AS_CHECK_STR_EQ(env->trace_id, "0123456789abcdef0123456789abcdef");
  AS_CHECK_INT_EQ(env->payload_case, AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED);
  AS_CHECK_STR_EQ(env->case_opened->case_id, "AS-20261123-000042");
  as_envelope_free(env);
  as_envelope_free(NULL);
}

/* Mutations of the valid fixture, each with its verdict. */
static void m_none(fixture_t *f) {
  (void)f;
}
static void m_bad_uuid(fixture_t *f) {
  f->env.event_id = "not-a-uuid";
}
static void m_empty_uuid(fixture_t *f) {
  f->env.event_id = "";
}
static void m_uuid_no_dashes(fixture_t *f) {
  f->env.event_id = "123e4567e89b42d3a456426614174000";
}
static void m_type_mismatch(fixture_t *f) {
  f->env.event_type = "CaseStateChanged";
}
static void m_type_case(fixture_t *f) {
  f->env.event_type = "caseopened";
}
static void m_type_empty(fixture_t *f) {
  f->env.event_type = "";
}
static void m_version_0(fixture_t *f) {
  f->env.schema_version = 0;
}
static void m_version_2(fixture_t *f) {
  f->env.schema_version = 2;
}
static void m_time_seconds(fixture_t *f) {
  f->env.occurred_at_us = 1763900000LL;
}
static void m_time_millis(fixture_t *f) {
  f->env.occurred_at_us = 1763900000000LL;
}
static void m_time_zero(fixture_t *f) {
  f->env.occurred_at_us = 0;
}
static void m_time_negative(fixture_t *f) {
  f->env.occurred_at_us = -1763900000000000LL;
}
static void m_time_min(fixture_t *f) {
  f->env.occurred_at_us = TIME_MIN_US;
}
static void m_time_below_min(fixture_t *f) {
  f->env.occurred_at_us = TIME_MIN_US - 1;
}
static void m_time_max(fixture_t *f) {
  f->env.occurred_at_us = TIME_MAX_US;
}
static void m_time_above_max(fixture_t *f) {
  f->env.occurred_at_us = TIME_MAX_US + 1;
}
static void m_time_nanos(fixture_t *f) {
  f->env.occurred_at_us = 1763900000000000000LL;
}
static void m_no_producer(fixture_t *f) {
  f->env.producer = NULL;
}
static void m_producer_no_service(fixture_t *f) {
  f->producer.service = "";
}
static void m_no_ids(fixture_t *f) {
  f->env.case_id = "";
}
static void m_order_only(fixture_t *f) {
  f->env.case_id = "";
  f->env.order_id = "ORD-1";
}
static void m_both_ids(fixture_t *f) {
  f->env.order_id = "ORD-1";
}
static void m_dead_letter_no_ids(fixture_t *f) {
  f->env.case_id = "";
  f->env.event_type = "DeadLetter";
  f->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER;
  f->env.dead_letter = &f->dead;
  f->dead.reason_code = AS_DLQ_DECODE_FAILED;
}
/* The contacts topic's envelopes name a buyer (the payload's buyer_id). */
static void m_contact_no_ids(fixture_t *f) {
  f->env.case_id = "";
  f->env.event_type = "BuyerContactUpdated";
  f->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_CONTACT_UPDATED;
  f->env.buyer_contact_updated = &f->contact;
  f->contact.buyer_id = "b-1";
}
static void m_erased_no_ids(fixture_t *f) {
  f->env.case_id = "";
  f->env.event_type = "BuyerErased";
  f->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_ERASED;
  f->env.buyer_erased = &f->erased;
  f->erased.buyer_id = "b-1";
}
static void m_case_space(fixture_t *f) {
  f->env.case_id = "AS 1";
}
static void m_case_slash(fixture_t *f) {
  f->env.case_id = "AS/1";
}
static void m_case_quote(fixture_t *f) {
  f->env.case_id = "AS'1";
}
static void m_case_utf8(fixture_t *f) {
  f->env.case_id = "AS-\xc3\xa9";
}
static void m_case_newline(fixture_t *f) {
  f->env.case_id = "AS-1\n";
}
static void m_case_all_safe(fixture_t *f) {
  f->env.case_id = "aZ09._:-";
}
static void m_case_64(fixture_t *f) {
  memset(f->case_id, 'c', 64);
  f->case_id[64] = '\0';
}
static void m_case_65(fixture_t *f) {
  memset(f->case_id, 'c', 65);
  f->case_id[65] = '\0';
}
static void m_order_65(fixture_t *f) {
  memset(f->order_id, 'o', 65);
  f->order_id[65] = '\0';
  f->env.order_id = f->order_id;
}
static void m_order_unsafe(fixture_t *f) {
  f->env.order_id = "ORD;1";
}
static void m_trace_upper(fixture_t *f) {
  f->env.trace_id = "0123456789ABCDEF0123456789ABCDEF";
}
static void m_trace_31(fixture_t *f) {
  f->env.trace_id = "0123456789abcdef0123456789abcde";
}
static void m_trace_33(fixture_t *f) {
  f->env.trace_id = "0123456789abcdef0123456789abcdef0";
}
static void m_trace_nonhex(fixture_t *f) {
  f->env.trace_id = "0123456789abcdef0123456789abcdeg";
}
static void m_trace_empty(fixture_t *f) {
  f->env.trace_id = "";
}
static void m_causation_bad(fixture_t *f) {
  f->env.causation_id = "cause-1";
}
static void m_causation_ok(fixture_t *f) {
  f->env.causation_id = "223e4567-e89b-42d3-a456-426614174000";
}
static void m_no_payload(fixture_t *f) {
  f->env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD__NOT_SET;
  f->env.case_opened = NULL;
}

AS_TEST(contract_table) {
  static const struct {
    const char *name;
    void (*mutate)(fixture_t *);
    const char *reason; /* NULL: decodes */
    const char *detail;
  } rows[] = {
      {"valid", m_none, NULL, ""},
      {"bad uuid", m_bad_uuid, AS_DLQ_INVALID_ENVELOPE, "event_id is not a UUID"},
      {"empty uuid", m_empty_uuid, AS_DLQ_INVALID_ENVELOPE, "event_id is not a UUID"},
      {"uuid without dashes", m_uuid_no_dashes, AS_DLQ_INVALID_ENVELOPE, "event_id is not a UUID"},
      {"type mismatch", m_type_mismatch, AS_DLQ_INVALID_ENVELOPE,
       "event_type does not name the payload"},
      {"type in other case", m_type_case, AS_DLQ_INVALID_ENVELOPE,
       "event_type does not name the payload"},
      {"type empty", m_type_empty, AS_DLQ_INVALID_ENVELOPE, "event_type does not name the payload"},
      {"schema_version 0", m_version_0, AS_DLQ_INVALID_ENVELOPE, "schema_version missing"},
      {"schema_version 2", m_version_2, AS_DLQ_UNSUPPORTED_VERSION,
       "schema_version newer than this worker understands"},
      {"time in seconds", m_time_seconds, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time in milliseconds", m_time_millis, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time in nanoseconds", m_time_nanos, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time zero", m_time_zero, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time negative", m_time_negative, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time = 2000-01-01", m_time_min, NULL, ""},
      {"time 1 us before 2000", m_time_below_min, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"time = 2200-01-01", m_time_max, NULL, ""},
      {"time 1 us after 2200", m_time_above_max, AS_DLQ_INVALID_ENVELOPE,
       "occurred_at_us outside 2000..2200 (not microseconds?)"},
      {"no producer", m_no_producer, AS_DLQ_INVALID_ENVELOPE, "producer.service missing"},
      {"producer without service", m_producer_no_service, AS_DLQ_INVALID_ENVELOPE,
       "producer.service missing"},
      {"neither case nor order id", m_no_ids, AS_DLQ_INVALID_ENVELOPE,
       "neither case_id nor order_id"},
      {"order id only", m_order_only, NULL, ""},
      {"both ids", m_both_ids, NULL, ""},
      {"dead letter without ids", m_dead_letter_no_ids, NULL, ""},
      {"contact without ids", m_contact_no_ids, NULL, ""},
      {"erasure without ids", m_erased_no_ids, NULL, ""},
      {"case id with space", m_case_space, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"case id with slash", m_case_slash, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"case id with quote", m_case_quote, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"case id with UTF-8", m_case_utf8, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"case id with newline", m_case_newline, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"case id of every safe class", m_case_all_safe, NULL, ""},
      {"case id of 64", m_case_64, NULL, ""},
      {"case id of 65", m_case_65, AS_DLQ_INVALID_ENVELOPE,
       "case_id has unsafe characters or length"},
      {"order id of 65", m_order_65, AS_DLQ_INVALID_ENVELOPE,
       "order_id has unsafe characters or length"},
      {"order id unsafe", m_order_unsafe, AS_DLQ_INVALID_ENVELOPE,
       "order_id has unsafe characters or length"},
      {"trace id upper case", m_trace_upper, AS_DLQ_INVALID_ENVELOPE,
       "trace_id is not 32 lower-case hex"},
      {"trace id of 31", m_trace_31, AS_DLQ_INVALID_ENVELOPE, "trace_id is not 32 lower-case hex"},
      {"trace id of 33", m_trace_33, AS_DLQ_INVALID_ENVELOPE, "trace_id is not 32 lower-case hex"},
      {"trace id not hex", m_trace_nonhex, AS_DLQ_INVALID_ENVELOPE,
       "trace_id is not 32 lower-case hex"},
      {"no trace id", m_trace_empty, NULL, ""},
      {"bad causation id", m_causation_bad, AS_DLQ_INVALID_ENVELOPE, "causation_id is not a UUID"},
      {"causation id", m_causation_ok, NULL, ""},
      {"no payload", m_no_payload, AS_DLQ_UNKNOWN_PAYLOAD,
       "no payload this schema knows (newer producer or empty oneof)"},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    fixture_t f;
    const char *reason;
    char detail[256], got[400], want[400];

    fixture_init(&f);
    rows[i].mutate(&f);
    as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
    /* Compared as one line so a failure names its row. */
    snprintf(got, sizeof got, "%s -> %s: %s", rows[i].name, env ? "ok" : reason, detail);
    snprintf(want, sizeof want, "%s -> %s: %s", rows[i].name,
             rows[i].reason ? rows[i].reason : "ok", rows[i].detail);
    AS_CHECK_STR_EQ(got, want);
    as_envelope_free(env);
  }
}

AS_TEST(dead_letter_payload_decodes) {
  fixture_t f;
  const char *reason;
  char detail[256];

  fixture_init(&f);
  m_dead_letter_no_ids(&f);
  f.dead.source_topic = "aftersales.probe.v1";
  f.dead.source_offset = 77;
  as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(env != NULL);
  AS_CHECK_INT_EQ(env->payload_case, AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER);
  AS_CHECK_STR_EQ(env->dead_letter->reason_code, AS_DLQ_DECODE_FAILED);
  AS_CHECK_STR_EQ(env->dead_letter->source_topic, "aftersales.probe.v1");
  AS_CHECK_INT_EQ(env->dead_letter->source_offset, 77);
  as_envelope_free(env);
}

/* A payload field this build does not know (a newer producer): protobuf-c
 * keeps it as an unknown field and the oneof stays unset. */
AS_TEST(newer_payload_is_unknown_payload) {
  fixture_t f;
  const char *reason = NULL;
  char detail[256];
  size_t len;

  fixture_init(&f);
  m_no_payload(&f);
  uint8_t *buf = pack(&f.env, &len);
  uint8_t *longer = malloc(len + 4);
  AS_CHECK(longer != NULL);
  memcpy(longer, buf, len);
  /* field 250, wire type 2 (tag varint 0xd2 0x0f), length 0 */
  memcpy(longer + len, "\xd2\x0f\x00", 3);
  as_envelope_t *env = as_envelope_decode(longer, len + 3, &reason, detail, sizeof detail);
  AS_CHECK(env == NULL);
  AS_CHECK_STR_EQ(reason, AS_DLQ_UNKNOWN_PAYLOAD);
  free(buf);
  free(longer);
}

AS_TEST(garbage_is_decode_failed) {
  static const struct {
    const char *bytes;
    size_t len;
    const char *detail;
  } rows[] = {
      {"\xff\xff\xff\xff", 4, "not a protobuf Envelope (4 bytes)"},
      {"\x0a\x10"
       "abc",
       5, "not a protobuf Envelope (5 bytes)"},         /* field 1 claims 16 bytes */
      {"\x0f", 1, "not a protobuf Envelope (1 bytes)"}, /* wire type 7 */
      {"\x18\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01", 12,
       "not a protobuf Envelope (12 bytes)"}, /* varint of 11 bytes */
      {"hello, world", 12, "not a protobuf Envelope (12 bytes)"},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const char *reason = NULL;
    char detail[256] = "";
    as_envelope_t *env = as_envelope_decode((const uint8_t *)rows[i].bytes, rows[i].len, &reason,
                                            detail, sizeof detail);
    AS_CHECK(env == NULL);
    AS_CHECK_STR_EQ(reason, AS_DLQ_DECODE_FAILED);
    AS_CHECK_STR_EQ(detail, rows[i].detail);
  }
}

/* Zero bytes are a valid (empty) protobuf message: refused by the contract,
 * not by the decoder. */
AS_TEST(empty_bytes_are_invalid_envelope) {
  const char *reason = NULL;
  char detail[256] = "";
  as_envelope_t *env = as_envelope_decode((const uint8_t *)"", 0, &reason, detail, sizeof detail);

  AS_CHECK(env == NULL);
  AS_CHECK_STR_EQ(reason, AS_DLQ_INVALID_ENVELOPE);
  AS_CHECK_STR_EQ(detail, "event_id is not a UUID");
}

/* The detail is cut to the caller's buffer, NUL-terminated. */
AS_TEST(detail_is_bounded) {
  fixture_t f;
  const char *reason;
  char detail[8];

  fixture_init(&f);
  m_no_ids(&f);
  as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(env == NULL);
  AS_CHECK_STR_EQ(detail, "neither");
}

AS_TEST(uppercase_event_id_is_canonicalised) {
  fixture_t f;
  const char *reason;
  char detail[256];

  fixture_init(&f);
  f.env.event_id = "123E4567-E89B-42D3-A456-4266141740AB";
  as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(env != NULL);
  AS_CHECK_STR_EQ(env->event_id, "123e4567-e89b-42d3-a456-4266141740ab");
  as_envelope_free(env);
}

AS_TEST(type_names) {
  AS_CHECK_STR_EQ(as_envelope_type_name(AFTERSALES__V1__ENVELOPE__PAYLOAD__NOT_SET), NULL);
  AS_CHECK_STR_EQ(as_envelope_type_name(AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED),
                  "CaseOpened");
  AS_CHECK_STR_EQ(as_envelope_type_name(AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER),
                  "DeadLetter");
  AS_CHECK_STR_EQ(as_envelope_type_name(AFTERSALES__V1__ENVELOPE__PAYLOAD_SYNTHETIC_PROBE),
                  "SyntheticProbe");
  /* A scalar field of the envelope and numbers no field has. (Field 7,
   * producer, is a message but no payload: it yields "Producer" today; no
   * decoded or stamped envelope can carry that payload_case.) */
  AS_CHECK_STR_EQ(as_envelope_type_name((Aftersales__V1__Envelope__PayloadCase)1), NULL);
  AS_CHECK_STR_EQ(as_envelope_type_name((Aftersales__V1__Envelope__PayloadCase)99), NULL);
  AS_CHECK_STR_EQ(as_envelope_type_name((Aftersales__V1__Envelope__PayloadCase)250), NULL);
}

AS_TEST(id_ok_table) {
  static const struct {
    const char *in;
    int ok;
  } rows[] = {
      {"a", 1},         {"AS-20261123-000042", 1},
      {"ord:1.2_3", 1}, {"", 0},
      {" ", 0},         {"a b", 0},
      {"a/b", 0},       {"a\"b", 0},
      {"a\\b", 0},      {"a,b", 0},
      {"a{b}", 0},      {"\xc3\xa9", 0},
      {"a\tb", 0},
  };
  char id64[65], id65[66];

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char got[64], want[64];
    snprintf(got, sizeof got, "'%s' -> %d", rows[i].in, as_envelope_id_ok(rows[i].in));
    snprintf(want, sizeof want, "'%s' -> %d", rows[i].in, rows[i].ok);
    AS_CHECK_STR_EQ(got, want);
  }
  memset(id64, 'x', 64);
  id64[64] = '\0';
  memset(id65, 'x', 65);
  id65[65] = '\0';
  AS_CHECK_INT_EQ(as_envelope_id_ok(id64), 1);
  AS_CHECK_INT_EQ(as_envelope_id_ok(id65), 0);
}

static int is_hex32(const char *s) {
  if (strlen(s) != 32) return 0;
  for (int i = 0; i < 32; i++)
    if (!strchr("0123456789abcdef", s[i])) return 0;
  return 1;
}

/* A fresh outgoing envelope: only the payload and the ids set by the
 * handler. */
static void outgoing(as_envelope_t *env, Aftersales__V1__CaseOpened *opened) {
  aftersales__v1__envelope__init(env);
  aftersales__v1__case_opened__init(opened);
  env->case_id = "AS-1";
  env->payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_CASE_OPENED;
  env->case_opened = opened;
}

AS_TEST(stamp_fills_identity) {
  as_envelope_t env;
  Aftersales__V1__CaseOpened opened;
  as_envelope_stamp_t stamp;
  const char *reason;
  char detail[256];
  int64_t now = as_now_us();

  outgoing(&env, &opened);
  AS_CHECK_INT_EQ(as_envelope_stamp(&env, &stamp, "review", "review-7", NULL, now), 0);
  AS_CHECK(as_uuid_valid(env.event_id));
  AS_CHECK_INT_EQ(env.event_id[14], '4');
  AS_CHECK(env.event_id == stamp.event_id);
  AS_CHECK_STR_EQ(env.event_type, "CaseOpened");
  AS_CHECK_INT_EQ(env.schema_version, AS_SCHEMA_VERSION);
  AS_CHECK_INT_EQ(env.occurred_at_us, now);
  AS_CHECK_STR_EQ(env.producer->service, "review");
  AS_CHECK_STR_EQ(env.producer->instance, "review-7");
  AS_CHECK(is_hex32(env.trace_id));
  AS_CHECK_STR_EQ(env.causation_id, ""); /* no cause */

  /* What stamping produced honours the contract. */
  as_envelope_t *back = roundtrip(&env, &reason, detail, sizeof detail);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK(back != NULL);
  AS_CHECK_STR_EQ(back->event_id, stamp.event_id);
  AS_CHECK_STR_EQ(back->trace_id, stamp.trace_id);
  AS_CHECK_STR_EQ(back->producer->service, "review");
  as_envelope_free(back);

  /* Two stamps: two ids and two traces. */
  as_envelope_stamp_t stamp2;
  as_envelope_t env2;
  Aftersales__V1__CaseOpened opened2;
  outgoing(&env2, &opened2);
  AS_CHECK_INT_EQ(as_envelope_stamp(&env2, &stamp2, "review", "review-7", NULL, now), 0);
  AS_CHECK(strcmp(stamp.event_id, stamp2.event_id) != 0);
  AS_CHECK(strcmp(stamp.trace_id, stamp2.trace_id) != 0);
}

AS_TEST(stamp_keeps_caller_event_id_and_time) {
  as_envelope_t env;
  Aftersales__V1__CaseOpened opened;
  as_envelope_stamp_t stamp;

  outgoing(&env, &opened);
  env.event_id = "0f0e0d0c-0b0a-8908-8706-050403020100";
  env.occurred_at_us = 1700000000000001LL;
  env.event_type = "Whatever"; /* overwritten: the runtime owns the type */
  env.schema_version = 9;      /* and the version */
  AS_CHECK_INT_EQ(as_envelope_stamp(&env, &stamp, "refunds", "r-1", NULL, as_now_us()), 0);
  AS_CHECK_STR_EQ(env.event_id, "0f0e0d0c-0b0a-8908-8706-050403020100");
  AS_CHECK_INT_EQ(env.occurred_at_us, 1700000000000001LL);
  AS_CHECK_STR_EQ(env.event_type, "CaseOpened");
  AS_CHECK_INT_EQ(env.schema_version, 1);
}

AS_TEST(stamp_inherits_trace_and_sets_causation) {
  fixture_t f;
  const char *reason;
  char detail[256];

  fixture_init(&f);
  as_envelope_t *cause = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(cause != NULL);

  as_envelope_t env;
  Aftersales__V1__CaseOpened opened;
  as_envelope_stamp_t stamp;
  outgoing(&env, &opened);
  AS_CHECK_INT_EQ(as_envelope_stamp(&env, &stamp, "review", "review-1", cause, as_now_us()), 0);
  AS_CHECK_STR_EQ(env.trace_id, "0123456789abcdef0123456789abcdef");
  AS_CHECK_STR_EQ(env.causation_id, "123e4567-e89b-42d3-a456-426614174000");
  AS_CHECK(strcmp(env.event_id, cause->event_id) != 0);
  as_envelope_t *back = roundtrip(&env, &reason, detail, sizeof detail);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK(back != NULL);
  AS_CHECK_STR_EQ(back->causation_id, cause->event_id);
  AS_CHECK_STR_EQ(back->trace_id, cause->trace_id);
  as_envelope_free(back);
  as_envelope_free(cause);
}

/* A cause without a trace id: a new trace starts, causation is still set. */
AS_TEST(stamp_cause_without_trace) {
  fixture_t f;
  const char *reason;
  char detail[256];

  fixture_init(&f);
  f.env.trace_id = "";
  as_envelope_t *cause = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK(cause != NULL);

  as_envelope_t env;
  Aftersales__V1__CaseOpened opened;
  as_envelope_stamp_t stamp;
  outgoing(&env, &opened);
  AS_CHECK_INT_EQ(as_envelope_stamp(&env, &stamp, "review", "review-1", cause, as_now_us()), 0);
  AS_CHECK(is_hex32(env.trace_id));
  AS_CHECK_STR_EQ(env.causation_id, cause->event_id);
  as_envelope_free(cause);
}

AS_TEST(stamp_without_payload_is_einval) {
  as_envelope_t env;
  as_envelope_stamp_t stamp;

  aftersales__v1__envelope__init(&env);
  env.case_id = "AS-1";
  AS_CHECK_INT_EQ(as_envelope_stamp(&env, &stamp, "review", "r", NULL, as_now_us()), -EINVAL);
  AS_CHECK(env.producer == NULL);
  AS_CHECK_STR_EQ(env.event_id, "");
}

AS_TEST(now_us_is_microseconds) {
  int64_t a = as_now_us(), b = as_now_us();
  AS_CHECK(a > TIME_MIN_US && a < TIME_MAX_US);
  AS_CHECK(b >= a);
}

/* Packs env, replaces the one occurrence of marker in the bytes with
 * hostile bytes of the same length (the field's length prefix stays right),
 * and decodes. Returns the decoded envelope or NULL with reason and detail. */
static as_envelope_t *decode_patched(const as_envelope_t *env, const char *marker,
                                     const char *hostile, const char **reason, char *detail,
                                     size_t detail_len) {
  size_t len, mlen = strlen(marker);
  uint8_t *buf = pack(env, &len);
  uint8_t *at = memmem(buf, len, marker, mlen);
  AS_CHECK(at != NULL);
  memcpy(at, hostile, mlen);
  *reason = "(unset)";
  detail[0] = '\0';
  as_envelope_t *out = as_envelope_decode(buf, len, reason, detail, detail_len);
  free(buf);
  return out;
}

/* Every string field, at any depth, singular or repeated, is strict UTF-8
 * without NUL: a C string shorter than its wire bytes would be another
 * string (an event id "<uuid>\0a" read as "<uuid>"). The reason names the
 * field path and where the bad byte sits. */
AS_TEST(strings_with_nul_or_bad_utf8_are_refused) {
  static const struct {
    const char *field, *marker, *hostile, *reason, *detail;
  } rows[] = {
      {"event_id", "#a", "\0a", AS_DLQ_STRING_NUL, "event_id: NUL byte at offset 36"},
      {"order_id", "o-x#evil", "o-x\0evil", AS_DLQ_STRING_NUL, "order_id: NUL byte at offset 3"},
      {"comment", "ok#", "ok\0", AS_DLQ_STRING_NUL, "case_opened.comment: NUL byte at offset 2"},
      {"lines[1].sku", "S2#", "S2\0", AS_DLQ_STRING_NUL,
       "case_opened.case_lines[1].sku: NUL byte at offset 2"},
      {"order.region", "CN-##", "CN-\xc0\xaf", AS_DLQ_INVALID_UTF8,
       "case_opened.order.region: not UTF-8 from offset 3"},
      {"producer.instance", "i-#", "i-\xff", AS_DLQ_INVALID_UTF8,
       "producer.instance: not UTF-8 from offset 2"},
      {"comment surrogate", "ok###", "ok\xed\xa0\x80", AS_DLQ_INVALID_UTF8,
       "case_opened.comment: not UTF-8 from offset 2"},
      {"comment cut", "ok#", "ok\xe4", AS_DLQ_INVALID_UTF8,
       "case_opened.comment: not UTF-8 from offset 2"},
  };
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    fixture_t f;
    Aftersales__V1__CaseLine l0 = AFTERSALES__V1__CASE_LINE__INIT, l1 = l0;
    Aftersales__V1__CaseLine *lines[] = {&l0, &l1};
    Aftersales__V1__OrderFacts order = AFTERSALES__V1__ORDER_FACTS__INIT;
    char event_id[48];
    fixture_init(&f);
    snprintf(event_id, sizeof event_id, "%s#a", f.event_id);
    if (strcmp(rows[i].field, "event_id") == 0) f.env.event_id = event_id;
    f.env.order_id = strcmp(rows[i].field, "order_id") == 0 ? "o-x#evil" : "o-x";
    f.producer.instance = strcmp(rows[i].field, "producer.instance") == 0 ? "i-#" : "i-1";
    f.opened.comment = strncmp(rows[i].field, "comment", 7) == 0 ? (char *)rows[i].marker : "ok";
    l0.sku = "S1";
    l1.sku = strcmp(rows[i].field, "lines[1].sku") == 0 ? "S2#" : "S2";
    f.opened.case_lines = lines;
    f.opened.n_case_lines = 2;
    order.region = strcmp(rows[i].field, "order.region") == 0 ? "CN-##" : "CN-EAST";
    f.opened.order = &order;
    const char *reason;
    char detail[256], what[320], want[320];
    as_envelope_t *env =
        decode_patched(&f.env, rows[i].marker, rows[i].hostile, &reason, detail, sizeof detail);
    snprintf(what, sizeof what, "%s: %s %s: %s", rows[i].field, env ? "decoded" : "refused",
             env ? "" : reason, detail);
    snprintf(want, sizeof want, "%s: refused %s: %s", rows[i].field, rows[i].reason,
             rows[i].detail);
    AS_CHECK_STR_EQ(what, want);
    as_envelope_free(env);
  }
}

/* A repeated string field names its element. */
AS_TEST(repeated_string_names_its_element) {
  fixture_t f;
  Aftersales__V1__SupplierQualityAlert alert = AFTERSALES__V1__SUPPLIER_QUALITY_ALERT__INIT;
  char *ids[] = {"c-1", "c-2", "c-3#"};
  const char *reason;
  char detail[256];

  fixture_init(&f);
  alert.case_ids = ids;
  alert.n_case_ids = 3;
  f.env.event_type = "SupplierQualityAlert";
  f.env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SUPPLIER_QUALITY_ALERT;
  f.env.supplier_quality_alert = &alert;
  as_envelope_t *env = decode_patched(&f.env, "c-3#", "c-3\0", &reason, detail, sizeof detail);
  AS_CHECK(env == NULL);
  AS_CHECK_STR_EQ(reason, AS_DLQ_STRING_NUL);
  AS_CHECK_STR_EQ(detail, "supplier_quality_alert.case_ids[2]: NUL byte at offset 3");
}

/* What the check is for: protobuf-c alone takes both NUL and invalid UTF-8
 * in a string (the C string then ends early). Bytes fields may hold any
 * byte, unknown fields are not judged, and good UTF-8 in every script
 * passes. */
AS_TEST(protobuf_c_alone_accepts_what_proto3_forbids) {
  fixture_t f;
  char event_id[48];
  fixture_init(&f);
  snprintf(event_id, sizeof event_id, "%s#a", f.event_id);
  f.env.event_id = event_id;
  f.opened.comment = "x##";
  size_t len;
  uint8_t *buf = pack(&f.env, &len);
  memcpy(memmem(buf, len, "#a", 2), "\0a", 2);
  memcpy(memmem(buf, len, "x##", 3), "x\xc3\x28", 3);
  as_envelope_t *raw = aftersales__v1__envelope__unpack(NULL, len, buf);
  AS_CHECK(raw != NULL);
  AS_CHECK_INT_EQ(strlen(raw->event_id), 36);
  AS_CHECK_STR_EQ(raw->case_opened->comment, "x\xc3\x28");
  aftersales__v1__envelope__free_unpacked(raw, NULL);
  free(buf);

  const char *reason;
  char detail[256];
  uint8_t blob[] = {0, 0xff, 0xc0, 0};
  fixture_init(&f);
  f.env.case_id = "";
  f.env.event_type = "DeadLetter";
  f.env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER;
  f.env.dead_letter = &f.dead;
  f.dead.reason_code = AS_DLQ_DECODE_FAILED;
  f.dead.original = (ProtobufCBinaryData){.len = sizeof blob, .data = blob};
  f.dead.detail = "尺码偏小 👍🏽 العربية";
  as_envelope_t *env = roundtrip(&f.env, &reason, detail, sizeof detail);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK(env != NULL);
  AS_CHECK_INT_EQ(env->dead_letter->original.len, sizeof blob);
  as_envelope_free(env);

  /* An unknown field 999 (length-delimited) holding a NUL and a bad byte. */
  fixture_init(&f);
  buf = pack(&f.env, &len);
  uint8_t *more = realloc(buf, len + 6);
  AS_CHECK(more != NULL);
  memcpy(more + len, "\xba\x3e\x03\x00\xff\x01", 6); /* tag (999 << 3 | 2), length 3 */
  env = as_envelope_decode(more, len + 6, &reason, detail, sizeof detail);
  AS_CHECK_STR_EQ(detail, "");
  AS_CHECK(env != NULL);
  as_envelope_free(env);
  free(more);
}

/* as_wire_field_clean trusts a field only when every occurrence of it is
 * clean, wherever it sits: a hostile producer may repeat a field (the last
 * one wins in protobuf-c) or put a bad string first, so the first bad path
 * alone says nothing about the fields after it. Fields 5 (order_id) and 120
 * (case_opened) of the envelope, 19 (comment) inside case_opened. */
AS_TEST(field_clean_checks_every_occurrence) {
  fixture_t f;
  fixture_init(&f);
  f.env.order_id = "o-1";
  f.opened.comment = "ok#";
  size_t len;
  uint8_t *buf = pack(&f.env, &len);
  AS_CHECK(as_wire_field_clean(buf, len, 0, 5));
  AS_CHECK(as_wire_field_clean(buf, len, 120, 19));
  memcpy(memmem(buf, len, "ok#", 3), "ok\0", 3);
  AS_CHECK(as_wire_field_clean(buf, len, 0, 5));     /* the order id is still clean */
  AS_CHECK(!as_wire_field_clean(buf, len, 120, 19)); /* the comment is not */
  /* A second order id appended after everything: NUL inside, read last. */
  uint8_t *two = malloc(len + 6);
  AS_CHECK(two != NULL);
  memcpy(two, buf, len);
  memcpy(two + len, "\x2a\x04o-1\0", 6); /* field 5, length 4 */
  AS_CHECK(!as_wire_field_clean(two, len + 6, 0, 5));
  AS_CHECK(!as_wire_field_clean(two, len - 1, 0, 5)); /* cut inside a field: not trusted */
  free(two);
  free(buf);
}
