/* as_envelope: decode-and-validate of incoming envelopes and stamping of
 * outgoing ones. The fuzz target tests/fuzz/fuzz_envelope.c drives
 * as_envelope_decode with arbitrary bytes. */
#include "as_envelope.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "as_uuid.h"
#include "as_wire.h"

/* Year 2000 .. 2200 in microseconds: anything outside is a broken clock or a
 * unit mistake (seconds or milliseconds sent as microseconds). */
#define AS_TIME_MIN_US 946684800000000LL
#define AS_TIME_MAX_US 7258118400000000LL

int64_t as_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

const char *as_envelope_type_name(Aftersales__V1__Envelope__PayloadCase c) {
  if (c == AFTERSALES__V1__ENVELOPE__PAYLOAD__NOT_SET) return NULL;
  const ProtobufCFieldDescriptor *f =
      protobuf_c_message_descriptor_get_field(&aftersales__v1__envelope__descriptor, (unsigned)c);
  if (!f || f->type != PROTOBUF_C_TYPE_MESSAGE || !(f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF))
    return NULL;
  return ((const ProtobufCMessageDescriptor *)f->descriptor)->short_name;
}

bool as_envelope_has_photo_or_video(Aftersales__V1__Attachment *const *a, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (a[i]->media_type && (strncmp(a[i]->media_type, "image/", 6) == 0 ||
                             strncmp(a[i]->media_type, "video/", 6) == 0))
      return true;
  return false;
}

bool as_envelope_id_ok(const char *s) {
  size_t n = 0;
  for (; s[n]; n++) {
    char c = s[n];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
          c == '_' || c == ':' || c == '-'))
      return false;
  }
  return n > 0 && n <= AS_ID_MAX;
}

static bool is_hex32(const char *s) {
  if (strlen(s) != 32) return false;
  for (int i = 0; i < 32; i++)
    if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return false;
  return true;
}

/* Payloads that need not name a case or an order: a dead letter may be
 * about bytes that never had an id; a buyer's contact and erasure are
 * about the buyer (their buyer_id; the record's key). */
static bool about_no_case(Aftersales__V1__Envelope__PayloadCase c) {
  return c == AFTERSALES__V1__ENVELOPE__PAYLOAD_DEAD_LETTER ||
         c == AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_CONTACT_UPDATED ||
         c == AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_ERASED;
}

/* Returns NULL when env honours the shared contract, else what is wrong. */
static const char *check_contract(as_envelope_t *env, const char **reason) {
  *reason = AS_DLQ_INVALID_ENVELOPE;
  if (!as_uuid_valid(env->event_id)) return "event_id is not a UUID";
  as_uuid_canonicalise(env->event_id);
  if (env->schema_version == 0) return "schema_version missing";
  if (env->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD__NOT_SET) {
    *reason = AS_DLQ_UNKNOWN_PAYLOAD;
    return "no payload this schema knows (newer producer or empty oneof)";
  }
  const char *type = as_envelope_type_name(env->payload_case);
  if (!type || strcmp(type, env->event_type) != 0) return "event_type does not name the payload";
  if (env->occurred_at_us < AS_TIME_MIN_US || env->occurred_at_us > AS_TIME_MAX_US)
    return "occurred_at_us outside 2000..2200 (not microseconds?)";
  if (!env->producer || !env->producer->service[0]) return "producer.service missing";
  if (!env->case_id[0] && !env->order_id[0] && !about_no_case(env->payload_case))
    return "neither case_id nor order_id";
  if (env->case_id[0] && !as_envelope_id_ok(env->case_id))
    return "case_id has unsafe characters or length";
  if (env->order_id[0] && !as_envelope_id_ok(env->order_id))
    return "order_id has unsafe characters or length";
  if (env->trace_id[0] && !is_hex32(env->trace_id)) return "trace_id is not 32 lower-case hex";
  if (env->causation_id[0] && !as_uuid_valid(env->causation_id))
    return "causation_id is not a UUID";
  if (env->schema_version > AS_SCHEMA_VERSION) {
    *reason = AS_DLQ_UNSUPPORTED_VERSION;
    return "schema_version newer than this worker understands";
  }
  return NULL;
}

/* Every string of the message on the wire, before any is read: a NUL would
 * make the C string another one than was sent (an event id "<uuid>\0a"
 * passes as "<uuid>"). Returns NULL or what is wrong, in detail. */
static const char *check_strings(const uint8_t *buf, size_t len, const char **reason, char *detail,
                                 size_t detail_len) {
  char path[160];
  size_t at = 0;
  switch (as_wire_check_strings(&aftersales__v1__envelope__descriptor, buf, len, path, sizeof path,
                                &at)) {
    case AS_WIRE_OK:
      return NULL;
    case AS_WIRE_NUL:
      *reason = AS_DLQ_STRING_NUL;
      snprintf(detail, detail_len, "%s: NUL byte at offset %zu", path, at);
      break;
    case AS_WIRE_UTF8:
      *reason = AS_DLQ_INVALID_UTF8;
      snprintf(detail, detail_len, "%s: not UTF-8 from offset %zu", path, at);
      break;
    case AS_WIRE_MALFORMED:
      *reason = AS_DLQ_DECODE_FAILED;
      snprintf(detail, detail_len, "%s: malformed field", path);
      break;
  }
  return detail;
}

as_envelope_t *as_envelope_decode(const uint8_t *buf, size_t len, const char **reason, char *detail,
                                  size_t detail_len) {
  as_envelope_t *env = aftersales__v1__envelope__unpack(NULL, len, buf);
  if (!env) {
    *reason = AS_DLQ_DECODE_FAILED;
    snprintf(detail, detail_len, "not a protobuf Envelope (%zu bytes)", len);
    return NULL;
  }
  if (check_strings(buf, len, reason, detail, detail_len)) {
    aftersales__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  const char *why = check_contract(env, reason);
  if (why) {
    snprintf(detail, detail_len, "%s", why);
    aftersales__v1__envelope__free_unpacked(env, NULL);
    return NULL;
  }
  return env;
}

void as_envelope_free(as_envelope_t *env) {
  if (env) aftersales__v1__envelope__free_unpacked(env, NULL);
}

int as_envelope_stamp(as_envelope_t *env, as_envelope_stamp_t *stamp, const char *service,
                      const char *instance, const as_envelope_t *cause, int64_t now_us) {
  const char *type = as_envelope_type_name(env->payload_case);
  if (!type) return -EINVAL;
  int rc = 0;
  if (!env->event_id || !env->event_id[0] || env->event_id == protobuf_c_empty_string) {
    if ((rc = as_uuid_v4(stamp->event_id)) < 0) return rc;
    env->event_id = stamp->event_id;
  }
  env->event_type = (char *)type;
  env->schema_version = AS_SCHEMA_VERSION;
  if (env->occurred_at_us == 0) env->occurred_at_us = now_us;
  aftersales__v1__producer__init(&stamp->producer);
  stamp->producer.service = (char *)service;
  stamp->producer.instance = (char *)instance;
  env->producer = &stamp->producer;
  if (cause && cause->trace_id[0]) {
    snprintf(stamp->trace_id, sizeof stamp->trace_id, "%s", cause->trace_id);
  } else if ((rc = as_uuid_trace_id(stamp->trace_id)) < 0) {
    return rc;
  }
  env->trace_id = stamp->trace_id;
  if (cause) {
    snprintf(stamp->causation_id, sizeof stamp->causation_id, "%s", cause->event_id);
    env->causation_id = stamp->causation_id;
  }
  return 0;
}
