/* as_wire: the string check of as_wire.h, a walk over protobuf wire format
 * (tag varints; varint, fixed64, length-delimited and fixed32 values).
 * Per message it costs one pass over the bytes plus one over each string;
 * the field path is built only when something is wrong. */
#include "as_wire.h"

#include <stdbool.h>
#include <stdio.h>

#include "as_utf8.h"

/* Deeper nesting than any schema of ours has; the bound keeps a future
 * recursive message type from recursing on hostile input without end. */
#define WIRE_DEPTH 32

/* Where the bad string sits: one field per nesting level, filled from the
 * string up as the walk unwinds. idx is the element of a repeated field,
 * -1 for a singular one. */
typedef struct walk {
  const ProtobufCFieldDescriptor *field[WIRE_DEPTH];
  long idx[WIRE_DEPTH];
  int levels;
  size_t at;
} walk_t;

static bool varint(const uint8_t **p, const uint8_t *end, uint64_t *v) {
  uint64_t r = 0;
  for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
    uint8_t b = *(*p)++;
    r |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      *v = r;
      return true;
    }
  }
  return false;
}

/* Reads one field at *p: its number, and for a length-delimited value the
 * value's bytes (*val stays NULL for the other wire types). */
static bool next_field(const uint8_t **p, const uint8_t *end, uint64_t *num, const uint8_t **val,
                       size_t *vlen) {
  uint64_t key, n;
  if (!varint(p, end, &key)) return false;
  *num = key >> 3;
  *val = NULL;
  switch (key & 7) {
    case 0:
      return varint(p, end, &n);
    case 1:
      n = 8;
      break;
    case 5:
      n = 4;
      break;
    case 2:
      if (!varint(p, end, &n) || n > (uint64_t)(end - *p)) return false;
      *val = *p;
      *vlen = (size_t)n;
      break;
    default: /* groups: no proto3 message has them, protobuf-c refuses them */
      return false;
  }
  if (n > (uint64_t)(end - *p)) return false;
  *p += n;
  return true;
}

/* The element index of the repeated field num that starts at upto: how many
 * fields of that number come before it (the error path only). */
static long index_of(const uint8_t *p, const uint8_t *upto, uint64_t num) {
  long i = 0;
  uint64_t n;
  const uint8_t *val;
  size_t vlen;
  while (p < upto && next_field(&p, upto, &n, &val, &vlen))
    if (n == num) i++;
  return i;
}

/* The first bad byte decides: a NUL, or the start of a bad sequence. */
static as_wire_verdict_t check_string(const uint8_t *s, size_t n, walk_t *w) {
  size_t ok = as_utf8_prefix((const char *)s, n);
  if (ok == n) return AS_WIRE_OK;
  w->at = ok;
  return s[ok] == 0 ? AS_WIRE_NUL : AS_WIRE_UTF8;
}

static as_wire_verdict_t walk(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                              int depth, walk_t *w) {
  const uint8_t *p = buf, *end = buf + len;
  while (p < end) {
    const uint8_t *start = p, *val;
    uint64_t num;
    size_t vlen = 0;
    if (!next_field(&p, end, &num, &val, &vlen)) return AS_WIRE_MALFORMED;
    const ProtobufCFieldDescriptor *f =
        val && num <= UINT32_MAX ? protobuf_c_message_descriptor_get_field(d, (unsigned)num) : NULL;
    as_wire_verdict_t v = AS_WIRE_OK;
    if (!f) continue; /* not length-delimited, or unknown */
    if (f->type == PROTOBUF_C_TYPE_STRING)
      v = check_string(val, vlen, w);
    else if (f->type == PROTOBUF_C_TYPE_MESSAGE)
      v = depth + 1 < WIRE_DEPTH ? walk(f->descriptor, val, vlen, depth + 1, w) : AS_WIRE_MALFORMED;
    if (v == AS_WIRE_OK) continue;
    if (w->levels == 0) w->levels = depth + 1;
    w->field[depth] = f;
    w->idx[depth] = f->label == PROTOBUF_C_LABEL_REPEATED ? index_of(buf, start, num) : -1;
    return v;
  }
  return AS_WIRE_OK;
}

as_wire_verdict_t as_wire_check_strings(const ProtobufCMessageDescriptor *desc, const uint8_t *buf,
                                        size_t len, char *path, size_t pathlen, size_t *at) {
  walk_t w = {.levels = 0};
  as_wire_verdict_t v = walk(desc, buf, len, 0, &w);
  if (pathlen) path[0] = '\0';
  *at = w.at;
  size_t used = 0;
  for (int i = 0; i < w.levels && used < pathlen; i++) {
    int n = w.idx[i] >= 0
                ? snprintf(path + used, pathlen - used, "%s%s[%ld]", i ? "." : "", w.field[i]->name,
                           w.idx[i])
                : snprintf(path + used, pathlen - used, "%s%s", i ? "." : "", w.field[i]->name);
    if (n < 0) break;
    used += (size_t)n;
  }
  return v;
}

bool as_wire_field_clean(const uint8_t *buf, size_t len, uint32_t sub, uint32_t field) {
  const uint8_t *p = buf, *end = buf + len, *val;
  uint64_t num;
  size_t vlen = 0;
  while (p < end) {
    if (!next_field(&p, end, &num, &val, &vlen)) return false;
    if (sub != 0 && num == sub && val && !as_wire_field_clean(val, vlen, 0, field)) return false;
    if (sub == 0 && num == field && (!val || !as_utf8_valid((const char *)val, vlen))) return false;
  }
  return true;
}
