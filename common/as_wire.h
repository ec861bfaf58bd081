/* as_wire: checks every string of a protobuf message on its wire bytes.
 *
 * protobuf-c hands each string field over as a NUL-terminated copy and
 * checks nothing in it: a string sent as "<uuid>\0a" reads as "<uuid>", so
 * two different records would share an event id, an order id "o-x\0evil"
 * would be stored as "o-x", and invalid UTF-8 (which proto3 forbids in a
 * string) would reach PostgreSQL and fail the batch there. as_wire walks the
 * raw bytes with the message's protobuf-c descriptor, so every string field
 * of every message the schema has or will have is covered: singular,
 * repeated, in a oneof, in nested messages at any depth. Unknown fields and
 * bytes fields are skipped. A string must be strict UTF-8 without NUL
 * (as_utf8).
 *
 * Run it on bytes protobuf-c has already unpacked: that is what says they
 * are a well-formed message; as_wire only judges the strings in them.
 *
 * Ownership: nothing is kept; descriptors are static, bytes borrowed. */
#ifndef AS_WIRE_H
#define AS_WIRE_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* What as_wire_check_strings found. */
typedef enum {
  AS_WIRE_OK = 0,
  AS_WIRE_NUL,       /* a string holds a NUL byte: its C length is not its wire length */
  AS_WIRE_UTF8,      /* a string is not strict UTF-8 */
  AS_WIRE_MALFORMED, /* the bytes are no message (a truncated field, nesting too deep) */
} as_wire_verdict_t;

/* Checks every string field in buf[0..len), a message of type desc. On a
 * verdict other than AS_WIRE_OK, path holds the field's path
 * ("aftersales_requested.lines[1].sku", truncated to pathlen) and *at the
 * offset of the first bad byte within that string. */
as_wire_verdict_t as_wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                        size_t len, char *path, size_t pathlen, size_t *at);

/* True if every occurrence of string field `field` in the message at
 * buf[0..len) (or, when `sub` is non-zero, in every occurrence of its
 * length-delimited field `sub`) is strict UTF-8 without NUL, and the bytes
 * up to them are well-formed. For deciding whether a few fields of a
 * message refused as a whole can still be trusted (a reply to the sender
 * must not name a request id that was cut at a NUL): protobuf parsers take
 * fields in any order and repeated, so every occurrence is checked. */
bool as_wire_field_clean(const uint8_t *buf, size_t len, uint32_t sub, uint32_t field);

#endif
