/* as_uuid: event and entity identifiers.
 *
 * Random ids are UUID version 4 from getrandom(2). Deterministic ids (a
 * refund's id derived from what it refunds, a dead letter's id derived from
 * its source offset) are name-based UUIDs version 5 (SHA-1, RFC 4122 /
 * RFC 9562) made with libuuid: the same inputs always give the same id, so a
 * redelivered event carries the same id and is booked once, and anyone can
 * recompute an id from the namespace string and the name. A namespace string
 * ns (e.g. "aftersales.refund") stands for the namespace UUID
 * uuid5(ROOT, ns), where ROOT = uuid5(NAMESPACE_URL, "urn:aftersales") =
 * a1d6b285-f6cf-56a1-a505-0d3655a064fa. In Python:
 *
 *   ROOT = uuid.uuid5(uuid.NAMESPACE_URL, "urn:aftersales")
 *   refund_id = uuid.uuid5(uuid.uuid5(ROOT, "aftersales.refund"), case_id)
 *
 * README.md ("Identifiers") lists every namespace and the name it is built
 * from. SHA-1 keeps a name a buyer partly chooses (an idempotency key) from
 * being crafted to collide with another's id.
 *
 * All ids are written in canonical lower-case 8-4-4-4-12 form into a caller
 * buffer of AS_UUID_STRLEN + 1 bytes. Nothing is allocated. */
#ifndef AS_UUID_H
#define AS_UUID_H

#include <stdbool.h>
#include <stddef.h>

#include "as_err.h"

#define AS_UUID_STRLEN 36

/* Returns 0 or a negative errno from getrandom. */
AS_MUST_CHECK int as_uuid_v4(char out[AS_UUID_STRLEN + 1]);

/* The v5 UUID of name (len bytes, any bytes, NUL included) in the namespace
 * uuid5(ROOT, ns); ns is a NUL-terminated string. */
void as_uuid_v5(char out[AS_UUID_STRLEN + 1], const char *ns, const void *name, size_t len);

/* An inspection task's id, shared by review (which asks for evidence-only
 * tasks) and inspection (which opens them): as_uuid_v5 in namespace
 * "aftersales.inspection_task" of "<case_id>|<kind>", kind "return" or
 * "evidence" (README, Identifiers). */
void as_uuid_inspection_task(char out[AS_UUID_STRLEN + 1], const char *case_id, const char *kind);

/* True if s is a UUID in 8-4-4-4-12 hex form (either case). */
bool as_uuid_valid(const char *s);

/* Lower-cases a valid UUID in place, so it compares equal to PostgreSQL's
 * text output. */
void as_uuid_canonicalise(char *s);

/* 32 lower-case hex characters (a W3C trace id) into out[33]. */
AS_MUST_CHECK int as_uuid_trace_id(char out[33]);

#endif
