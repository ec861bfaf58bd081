/* Unit tests for the logistics worker's pure parts: the outcome rule table
 * (defaults, overrides, every refusal naming the pair at fault), the
 * inquiry ids of README "Identifiers" (checked against Python's uuid5),
 * and the free-text check carriers' strings go through. */
#include "../../services/logistics/logistics.h"
#include "as_test.h"

#include <errno.h>
#include <string.h>

#define F(x) AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_##x
#define K(x) AFTERSALES__V1__INQUIRY_KIND__INQUIRY_KIND_##x

AS_TEST(rules_default_to_the_published_table) {
  logi_remedy_t r[LOGI_FINDINGS] = {0};
  char err[256] = "";
  AS_CHECK_INT_EQ(logi_rules_parse("", r, err, sizeof err), 0);
  AS_CHECK_INT_EQ(r[F(DELIVERED_CONFIRMED)], LOGI_REMEDY_NONE);
  AS_CHECK_INT_EQ(r[F(REDELIVERY)], LOGI_REMEDY_NONE);
  AS_CHECK_INT_EQ(r[F(LOST)], LOGI_REMEDY_PREFERRED);
  AS_CHECK_INT_EQ(r[F(IN_TRANSIT)], LOGI_REMEDY_WAIT);
}

AS_TEST(rules_override_only_what_they_name) {
  logi_remedy_t r[LOGI_FINDINGS] = {0};
  char err[256] = "";
  AS_CHECK_INT_EQ(logi_rules_parse("lost=refund,redelivery=wait", r, err, sizeof err), 0);
  AS_CHECK_INT_EQ(r[F(LOST)], LOGI_REMEDY_REFUND);
  AS_CHECK_INT_EQ(r[F(REDELIVERY)], LOGI_REMEDY_WAIT);
  AS_CHECK_INT_EQ(r[F(DELIVERED_CONFIRMED)], LOGI_REMEDY_NONE);
}

static void refused(const char *s, const char *want) {
  logi_remedy_t r[LOGI_FINDINGS] = {0};
  char err[256] = "";
  AS_CHECK_INT_EQ(logi_rules_parse(s, r, err, sizeof err), -EINVAL);
  AS_CHECK(strstr(err, want) != NULL);
}

AS_TEST(bad_rules_are_refused_with_the_pair) {
  refused("lost", "outcome rule \"lost\": want finding=remedy");
  refused("stolen=refund", "outcome rule \"stolen=refund\": unknown finding");
  refused("lost=cash", "outcome rule \"lost=cash\": remedy must be");
  refused("lost=refund,,", "want finding=remedy");
  refused("lost=", "remedy must be");
}

AS_TEST(inquiry_ids_are_python_uuid5) {
  char id[AS_UUID_STRLEN + 1];
  logi_inquiry_id(id, K(DELIVERED_NOT_RECEIVED), "case-1", 1);
  AS_CHECK_STR_EQ(id, "b718b958-82e0-50ff-9e77-d575196e369b");
  logi_inquiry_id(id, K(STALLED), "SF123", 2);
  AS_CHECK_STR_EQ(id, "a9289936-300b-5577-baf3-979f4a5b80c7");
  AS_CHECK_STR_EQ(logi_kind_name(K(RETURN_TRANSIT)), "return_transit");
  AS_CHECK_STR_EQ(logi_kind_name(99), "");
}

AS_TEST(carrier_text_is_bounded_and_has_no_control_bytes) {
  AS_CHECK(logi_text_ok("signed: neighbour 3B, 门口", 256));
  AS_CHECK(!logi_text_ok("in\ntransit", 256));
  AS_CHECK(!logi_text_ok("x\x7f", 256));
  AS_CHECK(!logi_text_ok("abcdef", 5));
  AS_CHECK(logi_opt_id_ok("") && logi_opt_id_ok("SF-1") && !logi_opt_id_ok("SF 1"));
}
