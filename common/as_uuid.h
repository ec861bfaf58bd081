/* as_uuid: event and entity identifiers.
 *
 * Random ids are UUID version 4 from getrandom(2). Deterministic ids (a
 * refund's id derived from what it refunds, a dead letter's id derived from
 * its source offset) are UUID version 8 (RFC 9562 "custom") built from a
 * 128-bit MurmurHash3 of a namespace and a name: the same inputs always give
 * the same id, so a redelivered event carries the same id and is booked once.
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

/* Deterministic id of (ns, name); name may contain any bytes. */
void as_uuid_v8(char out[AS_UUID_STRLEN + 1], const char *ns, const void *name, size_t len);

/* True if s is a UUID in 8-4-4-4-12 hex form (either case). */
bool as_uuid_valid(const char *s);

/* Lower-cases a valid UUID in place, so it compares equal to PostgreSQL's
 * text output. */
void as_uuid_canonicalise(char *s);

/* 32 lower-case hex characters (a W3C trace id) into out[33]. */
AS_MUST_CHECK int as_uuid_trace_id(char out[33]);

#endif
