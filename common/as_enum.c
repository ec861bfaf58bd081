/* as_enum: short names of proto enum values (as_enum.h). */
#include "as_enum.h"

#include <errno.h>
#include <string.h>

static const char UNSPECIFIED[] = "UNSPECIFIED";

/* The enum's value prefix ("CASE_STATE_") and its length in *len; 0 when
 * the zero value is not <PREFIX>UNSPECIFIED. */
static const char *prefix_of(const ProtobufCEnumDescriptor *d, size_t *len) {
  const ProtobufCEnumValue *z = protobuf_c_enum_descriptor_get_value(d, 0);
  size_t n = z ? strlen(z->name) : 0, u = sizeof UNSPECIFIED - 1;

  *len = n >= u && strcmp(z->name + n - u, UNSPECIFIED) == 0 ? n - u : 0;
  return z ? z->name : "";
}

static const char *short_name(const ProtobufCEnumValue *v, const char *prefix, size_t n) {
  return strncmp(v->name, prefix, n) == 0 ? v->name + n : v->name;
}

const char *as_enum_name(const ProtobufCEnumDescriptor *d, int value) {
  const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(d, value);
  size_t n;
  const char *prefix = prefix_of(d, &n);
  return v ? short_name(v, prefix, n) : "UNKNOWN";
}

/* name[0..len) spells s: as it is, or with lower, in lower case only. */
static bool spells(const char *s, const char *name, size_t len, bool lower) {
  if (strlen(s) != len) return false;
  for (size_t i = 0; i < len; i++) {
    char want = lower && s[i] >= 'A' && s[i] <= 'Z' ? (char)(s[i] - 'A' + 'a') : s[i];
    if (name[i] != want) return false;
  }
  return true;
}

int as_enum_value(const ProtobufCEnumDescriptor *d, const char *name, size_t len, bool lower,
                  int *out) {
  size_t n;
  const char *prefix = prefix_of(d, &n);

  for (unsigned i = 0; i < d->n_values; i++) {
    const ProtobufCEnumValue *v = &d->values[i];
    if (v->value != 0 && spells(short_name(v, prefix, n), name, len, lower)) {
      *out = v->value;
      return 0;
    }
  }
  return -EINVAL;
}
