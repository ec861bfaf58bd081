/* Unit tests for as_enum: short names of the enums the workers name (case
 * states, case types, reasons, complaint types, return methods, payers,
 * verdicts) for every value, checked against the prefix spelt from the
 * enum's own name (CaseState -> CASE_STATE_) and round-tripped through
 * as_enum_value; "UNKNOWN" for values outside an enum; the zero value,
 * prefixed names, other spellings and the lower-case mode refused or found
 * as documented; and full names for an enum without an UNSPECIFIED zero. */
#include "as_enum.h"
#include "as_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto/common.pb-c.h"
#include "proto/requests.pb-c.h"
#include "proto/review.pb-c.h"

static const ProtobufCEnumDescriptor *const named[] = {
    &aftersales__v1__case_state__descriptor,    &aftersales__v1__case_type__descriptor,
    &aftersales__v1__reason__descriptor,        &aftersales__v1__complaint_type__descriptor,
    &aftersales__v1__return_method__descriptor, &aftersales__v1__payer_party__descriptor,
    &aftersales__v1__verdict__descriptor,
};

/* "CaseState" -> "CASE_STATE_": the proto style guide's value prefix,
 * derived here independently of as_enum's zero-value rule. */
static void style_prefix(const char *camel, char *out, size_t cap) {
  size_t n = 0;
  for (const char *p = camel; *p && n + 3 < cap; p++) {
    if (p != camel && *p >= 'A' && *p <= 'Z') out[n++] = '_';
    out[n++] = *p >= 'a' && *p <= 'z' ? (char)(*p - 'a' + 'A') : *p;
  }
  out[n++] = '_';
  out[n] = '\0';
}

AS_TEST(every_value_is_named_and_found_again) {
  for (size_t e = 0; e < sizeof named / sizeof named[0]; e++) {
    const ProtobufCEnumDescriptor *d = named[e];
    char prefix[64], full[128];
    style_prefix(d->short_name, prefix, sizeof prefix);
    AS_CHECK(d->n_values > 1);
    for (unsigned i = 0; i < d->n_values; i++) {
      const char *name = as_enum_name(d, d->values[i].value);
      snprintf(full, sizeof full, "%s%s", prefix, name);
      AS_CHECK_STR_EQ(full, d->values[i].name);
      int back = -1;
      if (d->values[i].value == 0) {
        AS_CHECK_STR_EQ(name, "UNSPECIFIED");
        AS_CHECK_INT_EQ(as_enum_value(d, name, strlen(name), false, &back), -EINVAL);
        continue;
      }
      AS_CHECK_INT_EQ(as_enum_value(d, name, strlen(name), false, &back), 0);
      AS_CHECK_INT_EQ(back, d->values[i].value);
    }
  }
}

static const struct {
  const ProtobufCEnumDescriptor *d;
  int value;
  const char *want;
} names[] = {
    {&aftersales__v1__case_state__descriptor, 1, "OPEN"},
    {&aftersales__v1__case_state__descriptor, 17, "CLOSED"},
    {&aftersales__v1__case_state__descriptor, 18, "UNKNOWN"},
    {&aftersales__v1__case_state__descriptor, -1, "UNKNOWN"},
    {&aftersales__v1__reason__descriptor, 9, "DELIVERED_NOT_RECEIVED"},
    {&aftersales__v1__payer_party__descriptor, 1, "BUYER"},
    {&aftersales__v1__verdict__descriptor, 5, "GOODWILL_OFFER"},
    {&aftersales__v1__complaint_type__descriptor, 0, "UNSPECIFIED"},
};

AS_TEST(names_and_unknown_values) {
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    AS_CHECK_STR_EQ(as_enum_name(names[i].d, names[i].value), names[i].want);
}

#define STATES (&aftersales__v1__case_state__descriptor)
#define PAYERS (&aftersales__v1__payer_party__descriptor)

static const struct {
  const ProtobufCEnumDescriptor *d;
  const char *name;
  size_t len;
  bool lower;
  int rc, want;
} lookups[] = {
    {STATES, "OPEN", 4, false, 0, 1},
    {STATES, "OPENX", 4, false, 0, 1}, /* only len bytes are the name */
    {STATES, "OPENX", 5, false, -EINVAL, 0},
    {STATES, "OPE", 3, false, -EINVAL, 0},
    {STATES, "", 0, false, -EINVAL, 0},
    {STATES, "open", 4, false, -EINVAL, 0},
    {STATES, "CASE_STATE_OPEN", 15, false, -EINVAL, 0},
    {STATES, "UNSPECIFIED", 11, false, -EINVAL, 0},
    {STATES, "awaiting_evidence", 17, true, 0, 2},
    {PAYERS, "buyer", 5, true, 0, 1},
    {PAYERS, "platform", 8, true, 0, 3},
    {PAYERS, "BUYER", 5, true, -EINVAL, 0},
    {PAYERS, "Buyer", 5, true, -EINVAL, 0},
    {PAYERS, "buyer", 5, false, -EINVAL, 0},
    {PAYERS, "unspecified", 11, true, -EINVAL, 0},
};

AS_TEST(lookups_are_exact) {
  for (size_t i = 0; i < sizeof lookups / sizeof lookups[0]; i++) {
    int out = -7;
    AS_CHECK_INT_EQ(
        as_enum_value(lookups[i].d, lookups[i].name, lookups[i].len, lookups[i].lower, &out),
        lookups[i].rc);
    AS_CHECK_INT_EQ(out, lookups[i].rc == 0 ? lookups[i].want : -7); /* untouched when refused */
  }
}

/* An enum that does not start with <PREFIX>UNSPECIFIED = 0 keeps its
 * full names (as protoc-c would generate it: values by number, one range). */
static const ProtobufCEnumValue colour_values[] = {{"RED", "X_RED", 1}, {"BLUE", "X_BLUE", 2}};
static const ProtobufCIntRange colour_ranges[] = {{1, 0}, {0, 2}};
static const ProtobufCEnumDescriptor colour = {.magic = PROTOBUF_C__ENUM_DESCRIPTOR_MAGIC,
                                               .name = "x.Colour",
                                               .short_name = "Colour",
                                               .c_name = "X__Colour",
                                               .package_name = "x",
                                               .n_values = 2,
                                               .values = colour_values,
                                               .n_value_ranges = 1,
                                               .value_ranges = colour_ranges};

AS_TEST(an_enum_without_unspecified_has_full_names) {
  int out = 0;
  AS_CHECK_STR_EQ(as_enum_name(&colour, 2), "BLUE");
  AS_CHECK_STR_EQ(as_enum_name(&colour, 0), "UNKNOWN");
  AS_CHECK_INT_EQ(as_enum_value(&colour, "RED", 3, false, &out), 0);
  AS_CHECK_INT_EQ(out, 1);
}
