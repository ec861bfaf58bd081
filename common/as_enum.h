/* as_enum: the names of our protos' enum values, read from protobuf-c's
 * generated descriptors instead of hand-kept tables, so a value added to a
 * .proto is named everywhere at once. Names are short: the proto name less
 * the enum's prefix ("OPEN" for CASE_STATE_OPEN), the way the database, the
 * policy file and the configuration spell them. The prefix is the zero
 * value's name less "UNSPECIFIED" (every enum of ours starts with
 * <PREFIX>_UNSPECIFIED = 0); an enum without one has full names.
 *
 * Ownership: names are the descriptors' (static); nothing is allocated. */
#ifndef AS_ENUM_H
#define AS_ENUM_H

#include <stdbool.h>
#include <stddef.h>

#include <protobuf-c/protobuf-c.h>

#include "as_err.h"

/* The short name of value in d, "UNSPECIFIED" for 0, or "UNKNOWN" when d
 * has no such value (a newer producer's, or garbage). */
const char *as_enum_name(const ProtobufCEnumDescriptor *d, int value);

/* The value whose short name is name[0..len) into *out. With lower, name is
 * spelt in lower case ("buyer" for PAYER_PARTY_BUYER), as the policy file
 * spells payers; upper case is then refused, as lower case is without it.
 * The zero value is never found: UNSPECIFIED means "not set", not a name
 * anyone may write. Returns 0 or -EINVAL. */
AS_MUST_CHECK int as_enum_value(const ProtobufCEnumDescriptor *d, const char *name, size_t len,
                                bool lower, int *out);

#endif
