/* as_envelope: the only place where raw Kafka bytes become a trusted
 * Envelope, and where outgoing envelopes get their identity stamped.
 *
 * as_envelope_decode checks the contract every message of the fleet shares
 * (docs: README "Message envelope"): a UUID event id, an event type naming
 * the payload actually carried, a schema version we understand, a time, a
 * producer, a case or order id made of safe characters, and a payload.
 * Every string field of the envelope and of every message in it, at any
 * depth, is strict UTF-8 without NUL (proto3's rule, which protobuf-c does
 * not check; as_wire), so a string's C length is its wire length and no
 * service has to check either. Payload-specific rules belong to each
 * service's own validator.
 *
 * Ownership: a decoded envelope is owned by the caller; free it with
 * as_envelope_free. Reason codes are static strings. */
#ifndef AS_ENVELOPE_H
#define AS_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"
#include "proto/envelope.pb-c.h"

typedef Aftersales__V1__Envelope as_envelope_t;

#define AS_SCHEMA_VERSION 1u
#define AS_ID_MAX 64 /* case ids, order ids, keys */

/* Machine-readable reasons a message is dead-lettered. */
#define AS_DLQ_DECODE_FAILED "decode_failed"
#define AS_DLQ_INVALID_ENVELOPE "invalid_envelope"
#define AS_DLQ_UNKNOWN_PAYLOAD "unknown_payload"
#define AS_DLQ_UNEXPECTED_PAYLOAD "unexpected_payload"
#define AS_DLQ_TOO_LARGE "payload_too_large"
#define AS_DLQ_CONTRACT "contract_violation"
#define AS_DLQ_HANDLER_FAILED "handler_failed"
#define AS_DLQ_OUTBOX_REFUSED "outbox_row_refused" /* the producer refuses the row for good */
#define AS_DLQ_UNSUPPORTED_VERSION "unsupported_schema_version"
#define AS_DLQ_STRING_NUL "string_nul"           /* a string field holds a NUL byte */
#define AS_DLQ_INVALID_UTF8 "invalid_utf8"       /* a string field is not UTF-8 */
#define AS_DLQ_EVENT_ID_REUSED "event_id_reused" /* a known event id, other bytes */

/* Decodes and validates buf. Returns the envelope, or NULL with *reason set
 * to one of the AS_DLQ_* codes and a one-line explanation in detail. */
as_envelope_t *as_envelope_decode(const uint8_t *buf, size_t len, const char **reason, char *detail,
                                  size_t detail_len);

void as_envelope_free(as_envelope_t *env); /* NULL is a no-op */

/* The payload's message name ("CaseOpened") for a oneof case, or NULL. */
const char *as_envelope_type_name(Aftersales__V1__Envelope__PayloadCase c);

/* True for ids of 1..AS_ID_MAX characters from [A-Za-z0-9._:-]. */
bool as_envelope_id_ok(const char *s);

/* True if any of a[0..n) is a photo or a video (image/..., video/...):
 * the evidence quality, damage and not-as-described claims need. */
bool as_envelope_has_photo_or_video(Aftersales__V1__Attachment *const *a, size_t n);

/* Fills what the runtime owns in an outgoing envelope: event_id (a new v4
 * unless the caller set one), event_type, schema_version, occurred_at_us,
 * producer, and trace/causation from cause (may be NULL; then a new trace id).
 * String storage lives in stamp, which must outlive env's packing.
 * Returns 0, -EINVAL (no payload) or a getrandom error. */
typedef struct as_envelope_stamp {
  char event_id[37];
  char trace_id[33];
  char causation_id[37];
  Aftersales__V1__Producer producer;
} as_envelope_stamp_t;

AS_MUST_CHECK int as_envelope_stamp(as_envelope_t *env, as_envelope_stamp_t *stamp,
                                    const char *service, const char *instance,
                                    const as_envelope_t *cause, int64_t now_us);

/* Current Unix time in microseconds (CLOCK_REALTIME). */
int64_t as_now_us(void);

#endif
