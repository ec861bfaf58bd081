/* Unit tests for the review policy: the built-in policy parses; every class
 * of refused file is refused with the line and key in the message; small
 * files inherit the built-in [default]; merchant > category > default; and
 * review_decide at both sides of every boundary (windows to the
 * microsecond, thresholds to the minor unit), for every reason, with no
 * overflow at extreme amounts and timestamps. */
#include "../../services/review/review_policy.h"
#include "as_test.h"

#include "proto/common.pb-c.h"
#include "proto/review.pb-c.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define RS(x) AFTERSALES__V1__REASON__REASON_##x
#define V(x) AFTERSALES__V1__VERDICT__VERDICT_##x
#define O(x) AFTERSALES__V1__OUTCOME__OUTCOME_##x
#define CT(x) AFTERSALES__V1__CASE_TYPE__CASE_TYPE_##x
#define PP(x) AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_##x
#define RM(x) AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_##x

#define US INT64_C(1)
#define HOUR (INT64_C(3600000000))
#define DAY (24 * HOUR)
#define T0 INT64_C(1700000000123456) /* delivery, deliberately not on a day boundary */

/* A valid policy's tail: version and the mandatory [region *] (4 lines). */
#define MIN "version = t\n[region *]\nwarehouse = W1\naddress = A\n"

static review_policy_t *parse_ok_len(const char *text, size_t len) {
  char err[512] = "";
  review_policy_t *p = review_policy_parse(text, len, err, sizeof err);

  AS_CHECK_STR_EQ(err, "");
  AS_CHECK(p != NULL);
  return p;
}

static review_policy_t *parse_ok(const char *text) {
  return parse_ok_len(text, strlen(text));
}

static review_policy_t *builtin(void) {
  return parse_ok(review_policy_default);
}

static void check_refused(const char *text, size_t len, const char *want) {
  char err[512] = "";
  review_policy_t *p = review_policy_parse(text, len, err, sizeof err);

  if (p != NULL || strstr(err, want) == NULL) {
    fprintf(stderr, "# policy:\n%s\n", text);
    review_policy_free(p);
    AS_CHECK_STR_EQ(err, want);
  }
}

static const review_line_t APPAREL[] = {{"l1", "sku-1", "apparel", 1, 5000, 1, 5000, "", ""}};

/* An eligible changed-mind return one day after delivery, CNY 50.00. */
static review_case_t base_case(void) {
  return (review_case_t){
      .case_type = CT(RETURN_REFUND),
      .reason = RS(CHANGED_MIND),
      .merchant_id = "m-1",
      .currency = "CNY",
      .region = "CN-EAST",
      .lines = APPAREL,
      .nlines = 1,
      .claimed_minor = 5000,
      .delivered_at_us = T0,
      .submitted_at_us = T0 + DAY,
      .declared_unused = true,
      .first_order_at_us = T0 - 365 * DAY,
      .orders = 10,
      .cases = 1,
  };
}

static review_decision_t decide(const review_policy_t *p, const review_case_t *c) {
  review_decision_t d;

  memset(&d, 0xA5, sizeof d); /* review_decide must set every field */
  review_decide(p, c, &d);
  return d;
}

/* ---- parsing ---- */

AS_TEST(default_policy_parses) {
  review_policy_t *p = builtin();

  AS_CHECK_STR_EQ(review_policy_version(p), "builtin-1");
  review_policy_free(p);
  review_policy_free(NULL);
}

AS_TEST(refusals) {
  static const struct {
    const char *text, *want;
  } rows[] = {
      /* syntax */
      {MIN "[default]\nno_reason_days 7\n", "line 6: expected \"key = value\""},
      {MIN "= 5\n", "line 5: missing key before ="},
      {MIN "[default\n", "line 5: section header must end with ]"},
      {MIN "[defaults]\n", "line 5: unknown section [defaults]"},
      {MIN "[category]\n", "line 5: [category] needs a name"},
      {MIN "[category a b]\n", "line 5: section [category] takes one name"},
      {MIN "[default x]\n", "line 5: [default] takes no name"},
      {MIN "[default]\nno_reason_dayz = 7\n", "line 6: unknown key \"no_reason_dayz\""},
      {"version = t\nclaim_days = 3\n[region *]\nwarehouse = W\naddress = A\n",
       "line 2: key \"claim_days\" outside a section"},
      {MIN "[default]\nnon_returnable = yes\n",
       "line 6: key \"non_returnable\" is not allowed in [default]"},
      {MIN "[category x]\ncoupon_percent = 10\n",
       "line 6: key \"coupon_percent\" is not allowed in [category]"},
      {MIN "[merchant m]\nwarehouse = W\n",
       "line 6: key \"warehouse\" is not allowed in [merchant]"},
      {MIN "[region CN]\nno_reason_days = 3\n",
       "line 6: key \"no_reason_days\" is not allowed in [region]"},
      /* duplicates */
      {MIN "[default]\nclaim_days = 30\nclaim_days = 31\n", "line 7: duplicate key \"claim_days\""},
      {MIN "[default]\n[default]\n", "line 6: duplicate section [default]"},
      {MIN "[category a]\nno_reason_days = 3\n[category a]\n",
       "line 7: duplicate section [category a] (first at line 5)"},
      {MIN "[region *]\nwarehouse = W\naddress = A\n",
       "line 5: duplicate section [region *] (first at line 2)"},
      {"version = t\nversion = u\n[region *]\nwarehouse = W\naddress = A\n",
       "line 2: duplicate key \"version\""},
      /* numbers */
      {MIN "[default]\nno_reason_days = -1\n",
       "line 6: no_reason_days must be an integer from 0 to 365, not \"-1\""},
      {MIN "[default]\nno_reason_days = 366\n",
       "line 6: no_reason_days must be an integer from 0 to 365"},
      {MIN "[default]\nno_reason_days = 7d\n", "line 6: no_reason_days must be an integer"},
      {MIN "[default]\nno_reason_days =\n", "line 6: no_reason_days must be an integer"},
      {MIN "[default]\ngoodwill_percent = 0\n",
       "line 6: goodwill_percent must be an integer from 1 to 100"},
      {MIN "[default]\ngoodwill_percent = 101\n",
       "line 6: goodwill_percent must be an integer from 1 to 100"},
      {MIN "[default]\ncoupon_percent = 101\n",
       "line 6: coupon_percent must be an integer from 1 to 100"},
      {MIN "[default]\nmax_return_rate_pct = 0\n",
       "line 6: max_return_rate_pct must be an integer from 1 to 100"},
      {MIN "[default]\nevidence_days = 0\n",
       "line 6: evidence_days must be an integer from 1 to 365"},
      {MIN "[default]\nclaim_days = 99999999999999999999\n",
       "line 6: claim_days must be an integer"},
      {MIN "[category x]\nnon_returnable = maybe\n", "line 6: non_returnable must be yes or no"},
      /* names */
      {MIN "[default]\nevidence_required = QUALITY_DEFECT BROKEN\n",
       "line 6: evidence_required: unknown reason \"BROKEN\""},
      {MIN "[default]\nseller_fault = REASON_QUALITY_DEFECT\n",
       "line 6: seller_fault: unknown reason"},
      {MIN "[default]\nsevere = QUALITY_DEFECT QUALITY_DEFECT\n",
       "line 6: severe: \"QUALITY_DEFECT\" is listed twice"},
      {MIN "[default]\nreturn_methods = PICKUP TELEPORT\n",
       "line 6: return_methods: unknown return method \"TELEPORT\""},
      {MIN "[default]\nreturn_methods =\n", "line 6: return_methods needs at least one method"},
      {MIN "[default]\ndefault_return_method = MAIL\n",
       "line 6: default_return_method: unknown return method"},
      {MIN "[default]\nshipping.CHANGED_MIND = nobody\n",
       "line 6: shipping.CHANGED_MIND: unknown payer"},
      {MIN "[default]\nshipping.UNSPECIFIED = buyer\n",
       "line 6: unknown key \"shipping.UNSPECIFIED\""},
      /* money */
      {MIN "[default]\nmanual_review_above = cny:100\n",
       "line 6: manual_review_above: \"cny:100\" is not CUR:amount"},
      {MIN "[default]\nmanual_review_above = CNY:-1\n",
       "line 6: manual_review_above: \"CNY:-1\" is not CUR:amount"},
      {MIN "[default]\nmanual_review_above = CNY:1.5\n",
       "line 6: manual_review_above: \"CNY:1.5\""},
      {MIN "[default]\nmanual_review_above = CNY:\n", "line 6: manual_review_above: \"CNY:\""},
      {MIN "[default]\nmanual_review_above = CNY\n", "line 6: manual_review_above: \"CNY\""},
      {MIN "[default]\nmanual_review_above = CNYX:1\n", "line 6: manual_review_above: \"CNYX:1\""},
      {MIN "[default]\nmanual_review_above = CNY:99999999999999999999\n",
       "line 6: manual_review_above: \"CNY:9999"},
      {MIN "[default]\nmanual_review_above = CNY:5 CNY:6\n",
       "line 6: manual_review_above: currency CNY is listed twice"},
      /* texts */
      {MIN "[region CN]\nwarehouse = W 1\naddress = A\n",
       "line 6: warehouse must be printable ASCII without spaces"},
      {MIN "[region CN]\nwarehouse = W2\n", "line 5: [region CN] needs warehouse and address"},
      {"version = t\n[region *]\naddress = A\n", "line 2: [region *] needs warehouse and address"},
      {MIN "[default]\npackaging = \xff\n", "line 6: invalid UTF-8"},
      {MIN "[default]\npackaging = \xc0\xaf\n", "line 6: invalid UTF-8"},
      {MIN "[default]\npackaging = \xed\xa0\x80\n", "line 6: invalid UTF-8"},
      {MIN "[default]\npackaging = a\x01z\n", "line 6: control character 0x01"},
      {"version =\n[region *]\nwarehouse = W\naddress = A\n", "line 1: version must be 1 to 64"},
      {"version = a\x7f\n", "line 1: control character 0x7f"},
      {"version = 12345678901234567890123456789012345678901234567890123456789012345\n",
       "line 1: version must be 1 to 64"},
      {MIN "[default]\nversion = 2\n", "line 6: version belongs before the first section"},
      /* whole file */
      {"[region *]\nwarehouse = W\naddress = A\n", "missing version"},
      {"version = t\n[default]\nclaim_days = 3\n", "missing [region *]"},
      {"", "missing version"},
      /* contradictions, in each scope after merging */
      {MIN "[default]\nrefund_only_max = CNY:200000\n",
       "line 5: [default]: refund_only_max CNY:200000 is not below manual_review_above CNY:200000"},
      {MIN "[category x]\nmanual_review_above = CNY:500\n",
       "line 5: [category x]: refund_only_max CNY:1000 is not below manual_review_above CNY:500"},
      {MIN "[merchant m7]\nrefund_only_max = USD:30000\n",
       "line 5: [merchant m7]: refund_only_max USD:30000 is not below manual_review_above "
       "USD:30000"},
      {MIN "[default]\nrefund_only_max = CHF:100\n",
       "line 5: [default]: refund_only_max names CHF but manual_review_above has no figure for it"},
      {MIN "[default]\nmanual_review_above = USD:30000\n",
       "line 5: [default]: refund_only_max names CNY but manual_review_above has no figure for it"},
      {MIN "[default]\nshipping.QUALITY_DEFECT = buyer\n",
       "line 5: [default]: shipping.QUALITY_DEFECT = buyer, but QUALITY_DEFECT is a seller_fault "
       "reason"},
      {MIN "[merchant m9]\nshipping.MISSING_PARTS = buyer\n",
       "line 5: [merchant m9]: shipping.MISSING_PARTS = buyer, but MISSING_PARTS is a seller_fault "
       "reason"},
      {MIN "[default]\nseller_fault = QUALITY_DEFECT DAMAGED_IN_TRANSIT CHANGED_MIND\n",
       "shipping.CHANGED_MIND = buyer, but CHANGED_MIND is a seller_fault reason"},
      {MIN "[default]\nseller_fault = QUALITY_DEFECT\n",
       "severe lists DAMAGED_IN_TRANSIT, which is not a seller_fault reason"},
      {MIN "[default]\nclaim_days = 0\n",
       "line 5: [default]: goodwill_days > 0 needs claim_days > 0"},
      {MIN "[category x]\nclaim_days = 0\n",
       "line 5: [category x]: goodwill_days > 0 needs claim_days > 0"},
      {MIN "[default]\nreturn_methods = PICKUP\n",
       "default_return_method DROP_OFF is not in return_methods"},
      /* shipping_refund: one of three words, in [default] and [merchant] only, once */
      {MIN "[default]\nshipping_refund = half\n",
       "line 6: shipping_refund: unknown shipping refund (whole, pro_rata or none) \"half\""},
      {MIN "[default]\nshipping_refund =\n",
       "line 6: shipping_refund: unknown shipping refund (whole, pro_rata or none) \"\""},
      {MIN "[default]\nshipping_refund = Whole\n",
       "line 6: shipping_refund: unknown shipping refund (whole, pro_rata or none) \"Whole\""},
      {MIN "[default]\nshipping_refund = whole none\n",
       "line 6: shipping_refund: unknown shipping refund (whole, pro_rata or none) \"whole none\""},
      {MIN "[category x]\nshipping_refund = none\n",
       "line 6: key \"shipping_refund\" is not allowed in [category]"},
      {MIN "[region CN]\nshipping_refund = none\n",
       "line 6: key \"shipping_refund\" is not allowed in [region]"},
      {MIN "[merchant m]\nshipping_refund = none\nshipping_refund = whole\n",
       "line 7: duplicate key \"shipping_refund\""},
  };

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++)
    check_refused(rows[i].text, strlen(rows[i].text), rows[i].want);
}

AS_TEST(refuses_nul_and_oversize) {
  static const char nul[] = MIN "[default]\nclaim_days = 3\0\n";
  size_t big = (1u << 20) + 1;
  char *text = malloc(big);

  check_refused(nul, sizeof nul - 1, "line 6: NUL byte");
  AS_CHECK(text != NULL);
  memset(text, '#', big);
  memcpy(text, MIN, strlen(MIN));
  check_refused(text, big, "more than 1 MiB");
  text[big - 1] = '\n'; /* exactly 1 MiB: accepted (one long comment line) */
  review_policy_free(parse_ok_len(text, big - 1));
  free(text);
}

AS_TEST(accepts_layout_variants) {
  /* CRLF, tabs, indentation, comments, a default_method-compatible change */
  static const char text[] =
      "# comment\r\n"
      "version = v 2 (trial)\r\n"
      "\t[default]  \r\n"
      "  no_reason_days\t=\t14  \r\n"
      "   # indented comment\n"
      "evidence_required =\n"
      "[region *]\n"
      "warehouse = W1\n"
      "address = Room #5, 1 Road # not a comment\n";
  review_policy_t *p = parse_ok(text);
  review_case_t c = base_case();
  review_decision_t d;

  AS_CHECK_STR_EQ(review_policy_version(p), "v 2 (trial)");
  c.submitted_at_us = T0 + 14 * DAY;
  d = decide(p, &c);
  AS_CHECK_STR_EQ(d.rule, "approve.return_refund");
  AS_CHECK_STR_EQ(d.return_address, "Room #5, 1 Road # not a comment");
  c.reason = RS(QUALITY_DEFECT); /* evidence_required emptied: no photo needed */
  d = decide(p, &c);
  AS_CHECK_INT_EQ(d.verdict, V(APPROVED));
  review_policy_free(p);
}

AS_TEST(load_file) {
  char path[] = "/tmp/test_review_policy_XXXXXX", err[512] = "";
  int fd = mkstemp(path);
  review_policy_t *p;

  AS_CHECK(fd >= 0);
  AS_CHECK_INT_EQ(write(fd, review_policy_default, strlen(review_policy_default)),
                  (long long)strlen(review_policy_default));
  close(fd);
  p = review_policy_load(path, err, sizeof err);
  AS_CHECK(p != NULL);
  AS_CHECK_STR_EQ(review_policy_version(p), "builtin-1");
  review_policy_free(p);

  fd = open(path, O_WRONLY | O_TRUNC);
  AS_CHECK(fd >= 0);
  AS_CHECK_INT_EQ(write(fd, MIN "bogus\n", strlen(MIN) + 6), (long long)strlen(MIN) + 6);
  close(fd);
  AS_CHECK(review_policy_load(path, err, sizeof err) == NULL);
  AS_CHECK(strstr(err, path) != NULL);
  AS_CHECK(strstr(err, "line 5: expected") != NULL);
  unlink(path);
  AS_CHECK(review_policy_load(path, err, sizeof err) == NULL);
  AS_CHECK(strstr(err, "No such file") != NULL);
}

AS_TEST(small_file_inherits_builtin_default) {
  /* Only no_reason_days and the region: everything else is built-in. */
  review_policy_t *p = parse_ok(MIN "[default]\nno_reason_days = 10\n");
  review_case_t c = base_case();
  review_decision_t d;

  c.submitted_at_us = T0 + 10 * DAY;
  d = decide(p, &c);
  AS_CHECK_STR_EQ(d.rule, "approve.return_refund");
  AS_CHECK_INT_EQ(d.shipping_payer, PP(BUYER));
  AS_CHECK_STR_EQ(d.packaging, "original packaging, tags attached");
  AS_CHECK_STR_EQ(d.warehouse_id, "W1");
  c.submitted_at_us += US;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "window.no_reason_expired");
  /* built-in claim window (30 days) still applies */
  c.reason = RS(QUALITY_DEFECT);
  c.has_photo_or_video = true;
  c.submitted_at_us = T0 + 30 * DAY;
  AS_CHECK_INT_EQ(decide(p, &c).verdict, V(APPROVED));
  /* the file's sections are its own: fresh_produce is returnable here */
  static const review_line_t fresh[] = {{"l1", "s", "fresh_produce", 1, 100, 1, 100, "", ""}};
  c = base_case();
  c.lines = fresh;
  AS_CHECK_INT_EQ(decide(p, &c).verdict, V(APPROVED));
  review_policy_free(p);
}

AS_TEST(default_money_list_replaces_builtin) {
  review_policy_t *p =
      parse_ok(MIN "[default]\nmanual_review_above = USD:1000\nrefund_only_max = USD:10\n");
  review_case_t c = base_case();

  AS_CHECK_STR_EQ(decide(p, &c).rule, "policy.currency_unknown"); /* CNY gone */
  c.currency = "USD";
  c.claimed_minor = 1000;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "approve.return_refund");
  c.claimed_minor = 1001;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "amount.manual_threshold");
  c.claimed_minor = 10;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "approve.refund_only_cheap");
  review_policy_free(p);
}

/* no_reason_days: default 7, category 15, merchant 3; money per currency. */
static const char PRECEDENCE[] = MIN
    "[default]\nno_reason_days = 7\n"
    "[category electronics]\nno_reason_days = 15\n"
    "manual_review_above = CNY:100000\n"
    "[merchant m-strict]\nno_reason_days = 3\n"
    "[merchant m-free]\nshipping.CHANGED_MIND = seller\nnon_returnable = no\n"
    "packaging = merchant box\n"
    "[merchant m-none]\nnon_returnable = yes\n"
    "[category fresh]\nnon_returnable = yes\n";

AS_TEST(precedence_merchant_category_default) {
  static const review_line_t elec[] = {{"l1", "s", "electronics", 1, 100, 1, 100, "", ""}};
  static const review_line_t fresh[] = {{"l1", "s", "fresh", 1, 100, 1, 100, "", ""}};
  static const struct {
    const char *merchant;
    const review_line_t *lines;
    int64_t day;
    const char *rule;
  } rows[] = {
      {"m-1", APPAREL, 7, "approve.return_refund"},
      {"m-1", APPAREL, 8, "window.no_reason_expired"},
      {"m-1", elec, 15, "approve.return_refund"},
      {"m-1", elec, 16, "window.no_reason_expired"},
      {"m-strict", elec, 3, "approve.return_refund"},
      {"m-strict", elec, 4, "window.no_reason_expired"},
      {"m-strict", APPAREL, 4, "window.no_reason_expired"},
      {"m-1", fresh, 1, "category.non_returnable"},
      {"m-free", fresh, 1, "approve.return_refund"}, /* merchant says no */
      {"m-none", APPAREL, 1, "category.non_returnable"},
  };

  review_policy_t *p = parse_ok(PRECEDENCE);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.merchant_id = rows[i].merchant;
    c.lines = rows[i].lines;
    c.submitted_at_us = T0 + rows[i].day * DAY;
    AS_CHECK_STR_EQ(decide(p, &c).rule, rows[i].rule);
  }

  /* merchant shipping and packaging override */
  review_case_t c = base_case();
  review_decision_t d;
  c.merchant_id = "m-free";
  d = decide(p, &c);
  AS_CHECK_INT_EQ(d.shipping_payer, PP(SELLER));
  AS_CHECK_STR_EQ(d.packaging, "merchant box");
  /* category money figure per currency; others inherited */
  c = base_case();
  c.lines = elec;
  c.claimed_minor = 100001;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "amount.manual_threshold");
  c.currency = "USD";
  c.claimed_minor = 30000;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "approve.return_refund");
  review_policy_free(p);
}

/* shipping_refund: built-in pro_rata, a [default] and a [merchant] override;
 * only seller-fault refunds carry it (an exchange refunds nothing). */
AS_TEST(shipping_refund_key) {
  review_policy_t *b = builtin();
  review_case_t c = base_case();
  c.reason = RS(MISSING_PARTS);
  review_decision_t d = decide(b, &c);
  AS_CHECK(d.refund_shipping);
  AS_CHECK_INT_EQ(d.shipping_refund, REVIEW_SHIP_PRO_RATA);
  review_policy_free(b);

  review_policy_t *p = parse_ok(
      MIN "[default]\nshipping_refund = none\n[merchant m-whole]\nshipping_refund = whole\n");
  AS_CHECK_INT_EQ(decide(p, &c).shipping_refund, REVIEW_SHIP_NONE);
  c.merchant_id = "m-whole";
  AS_CHECK_INT_EQ(decide(p, &c).shipping_refund, REVIEW_SHIP_WHOLE);
  review_policy_free(p);
  p = parse_ok(MIN "[default]\nshipping_refund = pro_rata\n");
  AS_CHECK_INT_EQ(decide(p, &c).shipping_refund, REVIEW_SHIP_PRO_RATA);
  review_policy_free(p);
}

/* ---- decisions under the built-in policy ---- */

AS_TEST(no_reason_window_edge) {
  static const struct {
    int64_t after;
    const char *rule;
  } rows[] = {
      {0, "approve.return_refund"},
      {-DAY, "approve.return_refund"}, /* asked before the delivery scan */
      {7 * DAY - US, "approve.return_refund"},
      {7 * DAY, "approve.return_refund"}, /* day 7 at the delivery time: inside */
      {7 * DAY + US, "window.no_reason_expired"},
      {8 * DAY, "window.no_reason_expired"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.submitted_at_us = T0 + rows[i].after;
    AS_CHECK_STR_EQ(decide(p, &c).rule, rows[i].rule);
  }
  review_policy_free(p);
}

AS_TEST(claim_and_goodwill_window_edges) {
  static const struct {
    int64_t after;
    int verdict;
    const char *rule;
  } rows[] = {
      {30 * DAY - US, V(APPROVED), "approve.return_refund"},
      {30 * DAY, V(APPROVED), "approve.return_refund"},
      {30 * DAY + US, V(GOODWILL_OFFER), "goodwill.out_of_window"},
      {60 * DAY, V(GOODWILL_OFFER), "goodwill.out_of_window"},
      {60 * DAY + US, V(REJECTED), "window.claim_expired"},
      {61 * DAY, V(REJECTED), "window.claim_expired"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.reason = RS(QUALITY_DEFECT);
    c.has_photo_or_video = true;
    c.declared_unused = false; /* irrelevant for a defect */
    c.submitted_at_us = T0 + rows[i].after;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, rows[i].verdict);
    AS_CHECK_STR_EQ(d.rule, rows[i].rule);
  }
  review_policy_free(p);
  /* goodwill_days = 0: straight from approval to rejection */
  p = parse_ok(MIN "[default]\ngoodwill_days = 0\n");
  review_case_t c = base_case();
  c.reason = RS(MISSING_PARTS);
  c.submitted_at_us = T0 + 30 * DAY + US;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "window.claim_expired");
  review_policy_free(p);
}

AS_TEST(manual_threshold_edges) {
  static const struct {
    const char *currency;
    int64_t claimed;
    const char *rule;
  } rows[] = {
      {"CNY", 199999, "approve.return_refund"},   {"CNY", 200000, "approve.return_refund"},
      {"CNY", 200001, "amount.manual_threshold"}, {"JPY", 3999999, "approve.return_refund"},
      {"JPY", 4000000, "approve.return_refund"},  {"JPY", 4000001, "amount.manual_threshold"},
      {"GBP", 25000, "approve.return_refund"},    {"GBP", 25001, "amount.manual_threshold"},
      {"USD", 30000, "approve.return_refund"},    {"EUR", 30001, "amount.manual_threshold"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.currency = rows[i].currency;
    c.claimed_minor = rows[i].claimed;
    review_decision_t d = decide(p, &c);
    AS_CHECK_STR_EQ(d.rule, rows[i].rule);
    if (d.verdict == V(APPROVED)) AS_CHECK_INT_EQ(d.amount_minor, rows[i].claimed);
  }
  review_policy_free(p);
}

AS_TEST(refund_only_cheap_edges) {
  static const struct {
    int case_type;
    int64_t claimed;
    const char *rule;
    bool ret;
    int outcome;
  } rows[] = {
      {CT(RETURN_REFUND), 999, "approve.refund_only_cheap", false, O(REFUND)},
      {CT(RETURN_REFUND), 1000, "approve.refund_only_cheap", false, O(REFUND)},
      {CT(RETURN_REFUND), 1001, "approve.return_refund", true, O(REFUND)},
      {CT(REFUND_ONLY), 1000, "approve.refund_only_cheap", false, O(REFUND)},
      {CT(REFUND_ONLY), 1001, "approve.return_required", true, O(REFUND)},
      {CT(QUALITY_CLAIM), 1001, "approve.return_refund", true, O(REFUND)},
      {CT(EXCHANGE), 0, "approve.exchange", true, O(EXCHANGE)},
      {CT(EXCHANGE), 1001, "approve.exchange", true, O(EXCHANGE)},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.case_type = rows[i].case_type;
    c.claimed_minor = rows[i].claimed;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, V(APPROVED));
    AS_CHECK_STR_EQ(d.rule, rows[i].rule);
    AS_CHECK_INT_EQ(d.return_required, rows[i].ret);
    AS_CHECK_INT_EQ(d.outcome, rows[i].outcome);
    AS_CHECK_INT_EQ(d.return_wait_us, rows[i].ret ? 7 * DAY : 0);
    if (!rows[i].ret) {
      AS_CHECK_STR_EQ(d.warehouse_id, "");
      AS_CHECK_INT_EQ(d.return_method, 0);
    }
  }
  review_policy_free(p);
}

AS_TEST(non_returnable_categories) {
  static const char *const cats[] = {"fresh_produce", "custom_made"};
  review_policy_t *p = builtin();

  for (size_t i = 0; i < 2; i++) {
    review_line_t lines[] = {{"l1", "s", "apparel", 1, 100, 1, 100, "", ""},
                             {"l2", "s", cats[i], 1, 100, 1, 100, "", ""}};
    review_case_t c = base_case();
    c.lines = lines;
    c.nlines = 2;
    AS_CHECK_STR_EQ(decide(p, &c).rule, "category.non_returnable");
    c.reason = RS(SIZE_MISMATCH);
    AS_CHECK_STR_EQ(decide(p, &c).rule, "category.non_returnable");
    c.reason = RS(QUALITY_DEFECT);
    c.has_photo_or_video = true;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, V(APPROVED));
    AS_CHECK_STR_EQ(d.rule, "approve.return_refund");
    c.nlines = 1; /* apparel alone: returnable */
    c.reason = RS(CHANGED_MIND);
    AS_CHECK_STR_EQ(decide(p, &c).rule, "approve.return_refund");
  }
  review_policy_free(p);
}

AS_TEST(shipping_payer_every_reason) {
  static const struct {
    int reason, payer;
    bool seller_fault;
  } rows[] = {
      {RS(SIZE_MISMATCH), PP(BUYER), false},
      {RS(COLOUR_DIFFERS), PP(BUYER), false},
      {RS(QUALITY_DEFECT), PP(SELLER), true},
      {RS(DAMAGED_IN_TRANSIT), PP(SELLER), true},
      {RS(NOT_AS_DESCRIBED), PP(SELLER), true},
      {RS(MISSING_PARTS), PP(SELLER), true},
      {RS(CHANGED_MIND), PP(BUYER), false},
      {RS(NOT_RECEIVED), PP(SELLER), false},
      {RS(DELIVERED_NOT_RECEIVED), PP(SELLER), false},
      {RS(TRACKING_STALLED), PP(SELLER), false},
      {RS(OTHER), PP(BUYER), false},
  };
  review_policy_t *p = builtin();
  review_policy_t *q =
      parse_ok(MIN
               "[default]\nshipping.CHANGED_MIND = platform\nshipping.OTHER = seller\n"
               "refund_shipping_on_seller_fault = no\n");

  AS_CHECK_INT_EQ(sizeof rows / sizeof rows[0], RS(OTHER));
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.reason = rows[i].reason;
    c.has_photo_or_video = true;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, V(APPROVED));
    AS_CHECK_INT_EQ(d.shipping_payer, rows[i].payer);
    AS_CHECK_INT_EQ(d.refund_shipping, rows[i].seller_fault);
    d = decide(q, &c);
    AS_CHECK_INT_EQ(d.shipping_payer, rows[i].reason == RS(CHANGED_MIND) ? PP(PLATFORM)
                                      : rows[i].reason == RS(OTHER)      ? PP(SELLER)
                                                                         : rows[i].payer);
    AS_CHECK_INT_EQ(d.refund_shipping, false);
  }
  review_policy_free(q);
  review_policy_free(p);
}

AS_TEST(evidence_per_reason) {
  review_policy_t *p = builtin();

  for (int reason = RS(SIZE_MISMATCH); reason <= RS(OTHER); reason++) {
    bool needs = reason == RS(QUALITY_DEFECT) || reason == RS(DAMAGED_IN_TRANSIT) ||
                 reason == RS(NOT_AS_DESCRIBED);
    review_case_t c = base_case();
    c.reason = reason;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, needs ? V(AWAITING_EVIDENCE) : V(APPROVED));
    AS_CHECK_INT_EQ(d.evidence_wait_us, needs ? 7 * DAY : 0);
    if (needs) AS_CHECK_STR_EQ(d.rule, "evidence.required");
    c.has_photo_or_video = true;
    AS_CHECK_INT_EQ(decide(p, &c).verdict, V(APPROVED));
  }
  review_policy_free(p);
}

AS_TEST(abuse_signals) {
  static const struct {
    int32_t claims_on_order, orders, cases;
    const char *rule;
  } rows[] = {
      {1, 10, 1, "approve.return_refund"},
      {2, 10, 1, "abuse.repeated_claims"},
      {3, 10, 1, "abuse.repeated_claims"},
      {0, 10, 5, "approve.return_refund"}, /* exactly 50 %: within */
      {0, 10, 6, "abuse.return_rate"},
      {0, 4, 4, "approve.return_refund"}, /* below min_orders_for_rate */
      {0, 5, 2, "approve.return_refund"},
      {0, 5, 3, "abuse.return_rate"},
      {0, 0, 0, "approve.return_refund"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.claims_on_order = rows[i].claims_on_order;
    c.orders = rows[i].orders;
    c.cases = rows[i].cases;
    review_decision_t d = decide(p, &c);
    AS_CHECK_STR_EQ(d.rule, rows[i].rule);
  }
  review_policy_free(p);
}

AS_TEST(goodwill_partial_vs_coupon) {
  static const struct {
    int reason;
    int64_t tenure;
    int64_t claimed;
    int outcome, percent;
    int64_t amount;
  } rows[] = {
      {RS(QUALITY_DEFECT), 90 * DAY, 999, O(PARTIAL_REFUND), 50, 499},
      {RS(DAMAGED_IN_TRANSIT), 365 * DAY, 1000, O(PARTIAL_REFUND), 50, 500},
      {RS(QUALITY_DEFECT), 90 * DAY - US, 999, O(COUPON), 0, 199},
      {RS(MISSING_PARTS), 365 * DAY, 999, O(COUPON), 0, 199}, /* not severe */
      {RS(NOT_AS_DESCRIBED), 365 * DAY, 5, O(COUPON), 0, 1},
      {RS(QUALITY_DEFECT), -1, 999, O(COUPON), 0, 199}, /* first order unknown */
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.reason = rows[i].reason;
    c.has_photo_or_video = true;
    c.claimed_minor = rows[i].claimed;
    c.submitted_at_us = T0 + 45 * DAY;
    c.first_order_at_us = rows[i].tenure < 0 ? 0 : c.submitted_at_us - rows[i].tenure;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, V(GOODWILL_OFFER));
    AS_CHECK_STR_EQ(d.rule, "goodwill.out_of_window");
    AS_CHECK_INT_EQ(d.outcome, rows[i].outcome);
    AS_CHECK_INT_EQ(d.percent, rows[i].percent);
    AS_CHECK_INT_EQ(d.amount_minor, rows[i].amount);
    AS_CHECK_INT_EQ(d.offer_wait_us, 72 * HOUR);
    AS_CHECK(!d.return_required);
    AS_CHECK(!d.refund_shipping);
  }
  review_policy_free(p);
}

AS_TEST(region_fallback_and_return_method) {
  static const struct {
    const char *region;
    int method, want_method;
    const char *warehouse;
  } rows[] = {
      {"CN-EAST", RM(PICKUP), RM(PICKUP), "WH-CN-SH-01"},
      {"CN-WEST", RM(EXPRESS), RM(EXPRESS), "WH-CN-HZ-01"},
      {NULL, RM(UNSPECIFIED), RM(DROP_OFF), "WH-CN-HZ-01"},
      {"cn-east", 99, RM(DROP_OFF), "WH-CN-HZ-01"}, /* codes are exact */
      {"", -1, RM(DROP_OFF), "WH-CN-HZ-01"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.region = rows[i].region;
    c.return_method = rows[i].method;
    review_decision_t d = decide(p, &c);
    AS_CHECK(d.return_required);
    AS_CHECK_INT_EQ(d.return_method, rows[i].want_method);
    AS_CHECK_STR_EQ(d.warehouse_id, rows[i].warehouse);
    AS_CHECK(strlen(d.return_address) > 0);
  }
  review_policy_free(p);
  /* a method the policy does not allow falls back to the default */
  p = parse_ok(MIN "[default]\nreturn_methods = DROP_OFF PICKUP\n");
  review_case_t c = base_case();
  c.return_method = RM(EXPRESS);
  AS_CHECK_INT_EQ(decide(p, &c).return_method, RM(DROP_OFF));
  c.return_method = RM(PICKUP);
  AS_CHECK_INT_EQ(decide(p, &c).return_method, RM(PICKUP));
  review_policy_free(p);
}

AS_TEST(packaging_first_category_with_one) {
  static const review_line_t mixed[] = {{"l1", "s", "apparel", 1, 100, 1, 100, "", ""},
                                        {"l2", "s", "electronics", 1, 100, 1, 100, "", ""}};
  review_policy_t *p = builtin();
  review_case_t c = base_case();

  AS_CHECK_STR_EQ(decide(p, &c).packaging, "original packaging, tags attached");
  c.lines = mixed;
  c.nlines = 2;
  AS_CHECK_STR_EQ(decide(p, &c).packaging,
                  "anti-static bag inside the original box, all accessories");
  review_policy_free(p);
}

AS_TEST(multi_category_strictest) {
  static const char text[] = MIN
      "[category electronics]\nno_reason_days = 15\nclaim_days = 40\n"
      "refund_only_max = CNY:500\n"
      "[category books]\nno_reason_days = 10\nclaim_days = 60\n";
  static const review_line_t e[] = {{"l1", "s", "electronics", 1, 100, 1, 100, "", ""}};
  static const review_line_t eb[] = {{"l1", "s", "electronics", 1, 100, 1, 100, "", ""},
                                     {"l2", "s", "books", 1, 100, 1, 100, "", ""}};
  static const review_line_t ex[] = {{"l1", "s", "electronics", 1, 100, 1, 100, "", ""},
                                     {"l2", "s", "toys", 1, 100, 1, 100, "", ""}};
  static const review_line_t b[] = {{"l1", "s", "books", 1, 100, 1, 100, "", ""}};
  static const struct {
    const review_line_t *lines;
    size_t n;
    int reason;
    int64_t after, claimed;
    const char *rule;
  } rows[] = {
      {e, 1, RS(CHANGED_MIND), 15 * DAY, 5000, "approve.return_refund"},
      {e, 1, RS(CHANGED_MIND), 15 * DAY + US, 5000, "window.no_reason_expired"},
      {eb, 2, RS(CHANGED_MIND), 10 * DAY, 5000, "approve.return_refund"},
      {eb, 2, RS(CHANGED_MIND), 10 * DAY + US, 5000, "window.no_reason_expired"},
      {ex, 2, RS(CHANGED_MIND), 7 * DAY, 5000, "approve.return_refund"}, /* toys: default 7 */
      {ex, 2, RS(CHANGED_MIND), 7 * DAY + US, 5000, "window.no_reason_expired"},
      {b, 1, RS(MISSING_PARTS), 60 * DAY, 5000, "approve.return_refund"},
      {eb, 2, RS(MISSING_PARTS), 40 * DAY, 5000, "approve.return_refund"},
      {eb, 2, RS(MISSING_PARTS), 40 * DAY + US, 5000, "goodwill.out_of_window"},
      {eb, 2, RS(CHANGED_MIND), DAY, 500, "approve.refund_only_cheap"}, /* min(500, 1000) */
      {eb, 2, RS(CHANGED_MIND), DAY, 501, "approve.return_refund"},
      {b, 1, RS(CHANGED_MIND), DAY, 1000, "approve.refund_only_cheap"},
  };
  review_policy_t *p = parse_ok(text);

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.lines = rows[i].lines;
    c.nlines = rows[i].n;
    c.reason = rows[i].reason;
    c.submitted_at_us = T0 + rows[i].after;
    c.claimed_minor = rows[i].claimed;
    AS_CHECK_STR_EQ(decide(p, &c).rule, rows[i].rule);
  }
  review_policy_free(p);
}

AS_TEST(cannot_decide_goes_to_manual) {
  static const struct {
    int case_type, reason;
    const char *currency;
    int64_t claimed, delivered;
    const char *rule;
  } rows[] = {
      {CT(LOGISTICS), RS(CHANGED_MIND), "CNY", 100, T0, "type.not_reviewable"},
      {CT(COMPLAINT), RS(CHANGED_MIND), "CNY", 100, T0, "type.not_reviewable"},
      {CT(UNSPECIFIED), RS(CHANGED_MIND), "CNY", 100, T0, "type.not_reviewable"},
      {42, RS(CHANGED_MIND), "CNY", 100, T0, "type.not_reviewable"},
      {CT(RETURN_REFUND), RS(UNSPECIFIED), "CNY", 100, T0, "reason.unknown"},
      {CT(RETURN_REFUND), 12, "CNY", 100, T0, "reason.unknown"},
      {CT(RETURN_REFUND), -3, "CNY", 100, T0, "reason.unknown"},
      {CT(RETURN_REFUND), RS(CHANGED_MIND), "CNY", -1, T0, "amount.invalid"},
      {CT(RETURN_REFUND), RS(CHANGED_MIND), "XYZ", 100, T0, "policy.currency_unknown"},
      {CT(RETURN_REFUND), RS(CHANGED_MIND), "cny", 100, T0, "policy.currency_unknown"},
      {CT(RETURN_REFUND), RS(CHANGED_MIND), NULL, 100, T0, "policy.currency_unknown"},
      {CT(RETURN_REFUND), RS(CHANGED_MIND), "CNY", 100, 0, "order.not_delivered"},
  };
  review_policy_t *p = builtin();

  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    review_case_t c = base_case();
    c.case_type = rows[i].case_type;
    c.reason = rows[i].reason;
    c.currency = rows[i].currency;
    c.claimed_minor = rows[i].claimed;
    c.delivered_at_us = rows[i].delivered;
    review_decision_t d = decide(p, &c);
    AS_CHECK_INT_EQ(d.verdict, V(MANUAL_REVIEW));
    AS_CHECK_STR_EQ(d.rule, rows[i].rule);
    AS_CHECK_INT_EQ(d.amount_minor, 0);
  }
  review_policy_free(p);
}

AS_TEST(not_unused_rejected) {
  review_policy_t *p = builtin();
  review_case_t c = base_case();

  c.declared_unused = false;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "no_reason.not_unused");
  c.submitted_at_us = T0 + 8 * DAY; /* the window is checked first */
  AS_CHECK_STR_EQ(decide(p, &c).rule, "window.no_reason_expired");
  review_policy_free(p);
}

/* First match wins: evidence before abuse before amount before delivery. */
AS_TEST(rule_order) {
  review_policy_t *p = builtin();
  review_case_t c = base_case();

  c.reason = RS(DAMAGED_IN_TRANSIT);
  c.claims_on_order = 5;
  c.claimed_minor = 999999;
  c.delivered_at_us = 0;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "evidence.required");
  c.has_photo_or_video = true;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "abuse.repeated_claims");
  c.claims_on_order = 0;
  c.cases = 9;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "abuse.return_rate");
  c.cases = 0;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "amount.manual_threshold");
  c.claimed_minor = 100;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "order.not_delivered");
  c.currency = "XYZ";
  c.has_photo_or_video = false;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "policy.currency_unknown");
  review_policy_free(p);
}

AS_TEST(extremes_do_not_overflow) {
  static const char text[] = MIN
      "[default]\nmanual_review_above = CNY:9223372036854775807\n"
      "refund_only_max = CNY:0\n";
  review_policy_t *p = parse_ok(text);
  review_case_t c = base_case();
  review_decision_t d;

  c.reason = RS(QUALITY_DEFECT);
  c.has_photo_or_video = true;
  c.claimed_minor = INT64_MAX;
  c.submitted_at_us = T0 + 45 * DAY;
  c.first_order_at_us = 1;
  d = decide(p, &c);
  AS_CHECK_INT_EQ(d.outcome, O(PARTIAL_REFUND));
  AS_CHECK_INT_EQ(d.amount_minor, INT64_MAX / 2); /* floor(MAX * 50 / 100) */
  c.claimed_minor = INT64_MAX / 100;
  c.reason = RS(MISSING_PARTS);
  d = decide(p, &c);
  AS_CHECK_INT_EQ(d.outcome, O(COUPON));
  AS_CHECK_INT_EQ(d.amount_minor, INT64_MAX / 100 * 20 / 100);
  /* timestamps at the ends of int64 */
  c.delivered_at_us = INT64_MAX;
  c.submitted_at_us = INT64_MIN;
  AS_CHECK_INT_EQ(decide(p, &c).verdict, V(APPROVED));
  c.delivered_at_us = INT64_MIN;
  c.submitted_at_us = INT64_MAX;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "window.claim_expired");
  c.reason = RS(CHANGED_MIND);
  AS_CHECK_STR_EQ(decide(p, &c).rule, "window.no_reason_expired");
  c.orders = INT32_MAX;
  c.cases = INT32_MAX;
  AS_CHECK_STR_EQ(decide(p, &c).rule, "abuse.return_rate");
  review_policy_free(p);
}

AS_TEST(same_case_same_decision) {
  review_policy_t *p = builtin();
  review_case_t c = base_case();
  review_decision_t a = decide(p, &c), b;

  memset(&b, 0, sizeof b);
  review_decide(p, &c, &b);
  AS_CHECK_MEM_EQ(&a, sizeof a, &b, sizeof b);
  AS_CHECK_STR_EQ(a.rule, "approve.return_refund");
  AS_CHECK_INT_EQ(a.shipping_payer, PP(BUYER));
  AS_CHECK_INT_EQ(a.amount_minor, 5000);
  AS_CHECK_INT_EQ(a.return_method, RM(DROP_OFF));
  AS_CHECK_STR_EQ(a.warehouse_id, "WH-CN-SH-01");
  review_policy_free(p);
}

AS_TEST(shape_for_human_decisions) {
  review_policy_t *p = builtin();
  review_case_t c = base_case();
  review_decision_t d;

  c.reason = RS(QUALITY_DEFECT); /* no photo, out of every window: still shaped */
  c.submitted_at_us = T0 + 400 * DAY;
  c.return_method = RM(PICKUP);
  review_policy_shape(p, &c, &d);
  AS_CHECK_INT_EQ(d.outcome, O(REFUND));
  AS_CHECK(d.return_required);
  AS_CHECK_INT_EQ(d.shipping_payer, PP(SELLER));
  AS_CHECK(d.refund_shipping);
  AS_CHECK_INT_EQ(d.return_method, RM(PICKUP));
  AS_CHECK_STR_EQ(d.warehouse_id, "WH-CN-SH-01");
  AS_CHECK_INT_EQ(d.evidence_wait_us, 7 * DAY);
  AS_CHECK_INT_EQ(d.return_wait_us, 7 * DAY);
  AS_CHECK_INT_EQ(d.offer_wait_us, 72 * HOUR);
  c.reason = 99; /* unknown reason: no payer, no index out of range */
  review_policy_shape(p, &c, &d);
  AS_CHECK_INT_EQ(d.shipping_payer, 0);
  AS_CHECK(!d.refund_shipping);
  review_policy_free(p);
}

/* A parcel the carrier lost (issue 13): a reason whose shipping the policy
 * has the seller bear returns the fee like a seller-fault reason; a buyer's
 * reason does not; people's decisions (review_policy_shape) are unchanged. */
AS_TEST(shape_lost_refunds_shipping_when_the_seller_bears_it) {
  review_policy_t *p = builtin();
  review_case_t c = base_case();
  review_decision_t d;
  c.reason = RS(DELIVERED_NOT_RECEIVED);
  review_policy_shape(p, &c, &d);
  AS_CHECK(!d.refund_shipping);
  review_policy_shape_lost(p, &c, &d);
  AS_CHECK(d.refund_shipping);
  AS_CHECK_INT_EQ(d.shipping_refund, REVIEW_SHIP_PRO_RATA);
  c.reason = RS(NOT_RECEIVED);
  review_policy_shape_lost(p, &c, &d);
  AS_CHECK(d.refund_shipping);
  c.reason = RS(CHANGED_MIND);
  review_policy_shape_lost(p, &c, &d);
  AS_CHECK(!d.refund_shipping);
  c.reason = 99;
  review_policy_shape_lost(p, &c, &d);
  AS_CHECK(!d.refund_shipping);
  review_policy_free(p);
}

AS_TEST(seller_fault_set) {
  review_policy_t *p = builtin();

  for (int reason = -1; reason <= 40; reason++) {
    bool want = reason == RS(QUALITY_DEFECT) || reason == RS(DAMAGED_IN_TRANSIT) ||
                reason == RS(NOT_AS_DESCRIBED) || reason == RS(MISSING_PARTS);
    AS_CHECK_INT_EQ(review_policy_seller_fault(p, reason), want);
  }
  review_policy_free(p);
}

/* Rule qc.evidence (issue 12): a refund-only claim of a QC reason with a
 * photo, in the claim window, goes to QC (manual review verdict, inspect
 * set, what a confirmed defect pays, no return); other types, a buyer's
 * reason, no photo, out of the window, or a category that opts out are
 * decided as before. */
AS_TEST(qc_evidence_routes_refund_only_quality_claims) {
  static const review_line_t fresh[] = {{"l1", "s", "fresh_produce", 1, 100, 1, 100, "", ""}};
  review_policy_t *p = builtin();
  review_case_t c = base_case();
  c.case_type = CT(REFUND_ONLY);
  c.reason = RS(QUALITY_DEFECT);
  c.has_photo_or_video = true;
  review_decision_t d = decide(p, &c);
  AS_CHECK_INT_EQ(d.verdict, V(MANUAL_REVIEW));
  AS_CHECK_STR_EQ(d.rule, "qc.evidence");
  AS_CHECK(d.inspect);
  AS_CHECK_INT_EQ(d.amount_minor, 5000);
  AS_CHECK_INT_EQ(d.outcome, O(REFUND));
  AS_CHECK(!d.return_required);
  AS_CHECK(d.refund_shipping);
  AS_CHECK_STR_EQ(d.warehouse_id, "");
  c.lines = fresh; /* evidence only: QC still looks */
  AS_CHECK(decide(p, &c).inspect);
  c = base_case();
  c.case_type = CT(REFUND_ONLY);
  c.reason = RS(QUALITY_DEFECT);
  c.has_photo_or_video = true;
  const struct {
    const char *why;
    int case_type, reason;
    bool photo;
    int64_t submitted;
  } off[] = {
      {"return_refund", CT(RETURN_REFUND), RS(QUALITY_DEFECT), true, T0 + DAY},
      {"changed_mind", CT(REFUND_ONLY), RS(CHANGED_MIND), true, T0 + DAY},
      {"missing_parts", CT(REFUND_ONLY), RS(MISSING_PARTS), true, T0 + DAY},
      {"no_photo", CT(REFUND_ONLY), RS(QUALITY_DEFECT), false, T0 + DAY},
      {"window", CT(REFUND_ONLY), RS(QUALITY_DEFECT), true, T0 + 31 * DAY},
  };
  for (size_t i = 0; i < sizeof off / sizeof off[0]; i++) {
    review_case_t k = c;
    k.case_type = off[i].case_type;
    k.reason = off[i].reason;
    k.has_photo_or_video = off[i].photo;
    k.submitted_at_us = off[i].submitted;
    review_decision_t e = decide(p, &k);
    char got[96], want[96];
    snprintf(got, sizeof got, "%s: inspect %d, rule qc %d", off[i].why, e.inspect,
             strcmp(e.rule, "qc.evidence") == 0);
    snprintf(want, sizeof want, "%s: inspect 0, rule qc 0", off[i].why);
    AS_CHECK_STR_EQ(got, want);
  }
  review_policy_free(p);
  p = parse_ok(
      "version = t\n[category apparel]\nqc_evidence = no\n[region *]\n"
      "warehouse = W\naddress = A\n");
  AS_CHECK(!decide(p, &c).inspect);
  review_policy_free(p);
  p = parse_ok(
      "version = t\n[default]\nqc_case_types = REFUND_ONLY QUALITY_CLAIM\n"
      "[region *]\nwarehouse = W\naddress = A\n");
  c.case_type = CT(QUALITY_CLAIM);
  AS_CHECK(decide(p, &c).inspect);
  review_policy_free(p);
  static const char bad_type[] =
      "version = t\n[default]\nqc_case_types = REFUND_ONLY REFUNDONLY\n[region *]\n"
      "warehouse = W\naddress = A\n";
  static const char bad_scope[] =
      "version = t\n[category x]\nqc_reasons = QUALITY_DEFECT\n"
      "[region *]\nwarehouse = W\naddress = A\n";
  check_refused(bad_type, strlen(bad_type),
                "line 3: qc_case_types: unknown case type \"REFUNDONLY\"");
  check_refused(bad_scope, strlen(bad_scope),
                "line 3: key \"qc_reasons\" is not allowed in [category]");
}

/* Proactive outreach (a flawed lot's buyers): the built-in offer is a
 * partial refund of 20 % (floored) with 168 hours to answer; a file or a
 * merchant may offer an exchange instead; the keys are refused with their
 * line like any other. */
AS_TEST(proactive_offer_keys) {
  review_policy_t *b = builtin();
  review_case_t c = base_case();
  c.case_type = CT(QUALITY_CLAIM);
  c.reason = RS(QUALITY_DEFECT);
  c.claimed_minor = 5999;
  c.delivered_at_us = 0; /* not judged as a claim: no window, no evidence rule applies */
  review_decision_t d;
  memset(&d, 0xA5, sizeof d);
  review_proactive_decide(b, &c, &d);
  AS_CHECK_INT_EQ(d.verdict, V(GOODWILL_OFFER));
  AS_CHECK_STR_EQ(d.rule, "proactive.offer");
  AS_CHECK_INT_EQ(d.outcome, O(PARTIAL_REFUND));
  AS_CHECK_INT_EQ(d.percent, 20);
  AS_CHECK_INT_EQ(d.amount_minor, 1199); /* floor(5999 x 20 %) */
  AS_CHECK_INT_EQ(d.offer_wait_us, 168 * HOUR);
  AS_CHECK(!d.return_required && !d.refund_shipping);
  review_policy_free(b);

  review_policy_t *p =
      parse_ok(MIN
               "[default]\nproactive_percent = 35\nproactive_offer_hours = 1\n"
               "[merchant m-swap]\nproactive_offer = exchange\nproactive_offer_hours = 48\n");
  review_proactive_decide(p, &c, &d);
  AS_CHECK_INT_EQ(d.outcome, O(PARTIAL_REFUND));
  AS_CHECK_INT_EQ(d.amount_minor, 2099);
  AS_CHECK_INT_EQ(d.offer_wait_us, HOUR);
  c.merchant_id = "m-swap";
  review_proactive_decide(p, &c, &d);
  AS_CHECK_INT_EQ(d.outcome, O(EXCHANGE));
  AS_CHECK_INT_EQ(d.amount_minor, 0);
  AS_CHECK_INT_EQ(d.percent, 0);
  AS_CHECK_INT_EQ(d.offer_wait_us, 48 * HOUR);
  review_policy_free(p);

  static const char coupon[] = MIN "[default]\nproactive_offer = coupon\n";
  check_refused(coupon, strlen(coupon),
                "line 6: proactive_offer: unknown offer (partial_refund or exchange) \"coupon\"");
  static const char zero[] = MIN "[default]\nproactive_percent = 0\n";
  check_refused(zero, strlen(zero),
                "line 6: proactive_percent must be an integer from 1 to 100, not \"0\"");
  static const char cat[] = MIN "[category x]\nproactive_offer = exchange\n";
  check_refused(cat, strlen(cat), "line 6: key \"proactive_offer\" is not allowed in [category]");
}

/* Logistics outcomes (issue 13): a redelivered case closes after
 * redelivery_close_days (built-in 7), per [default] or [merchant]; a
 * [category] may not set it, and 0 is refused. */
AS_TEST(redelivery_close_days) {
  review_policy_t *b = builtin();
  review_case_t c = base_case();
  AS_CHECK_INT_EQ(review_policy_redelivery_close_us(b, &c), 7 * DAY);
  review_policy_free(b);
  review_policy_t *p = parse_ok(MIN
                                "[default]\nredelivery_close_days = 3\n"
                                "[merchant m-slow]\nredelivery_close_days = 14\n");
  AS_CHECK_INT_EQ(review_policy_redelivery_close_us(p, &c), 3 * DAY);
  c.merchant_id = "m-slow";
  AS_CHECK_INT_EQ(review_policy_redelivery_close_us(p, &c), 14 * DAY);
  review_policy_free(p);
  static const char zero[] = MIN "[default]\nredelivery_close_days = 0\n";
  check_refused(zero, strlen(zero),
                "line 6: redelivery_close_days must be an integer from 1 to 365, not \"0\"");
  static const char cat[] = MIN "[category x]\nredelivery_close_days = 2\n";
  check_refused(cat, strlen(cat),
                "line 6: key \"redelivery_close_days\" is not allowed in [category]");
}
