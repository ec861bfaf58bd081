/* Fuzz target for review_policy_parse: the return policy is a file an
 * operator edits and the review worker reloads on SIGHUP, so no text may
 * crash it, and a text it accepts must be one review_decide can apply.
 * Seeds: tests/fuzz/corpus/policy/ (the built-in policy, small valid files,
 * refused ones). An accepted policy decides a spread of cases (every
 * reason; categories, merchant and region the seeds name, and ones they do
 * not). The Makefile links it with libFuzzer (`make fuzz`) and with
 * tests/fuzz/replay.c (`make test`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/review/review_policy.h"
#include "proto/common.pb-c.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define DAY_US (INT64_C(86400000000))
#define T0 INT64_C(1700000000123456)

static const review_line_t LINES[] = {
    {"l1", "sku-1", "electronics", 1, 5000, 1, 5000, "", ""},
    {"l2", "sku-2", "fresh_produce", 2, 150000, 3, 420000, "", ""},
    {"l3", "sku-3", "unlisted", 1, INT64_MAX / 4, 1, INT64_MAX / 4, "", ""},
};

static void check(const review_decision_t *d) {
  if (d->rule == NULL || d->rule[0] == '\0') abort();
  if (strnlen(d->warehouse_id, sizeof d->warehouse_id) == sizeof d->warehouse_id ||
      strnlen(d->return_address, sizeof d->return_address) == sizeof d->return_address ||
      strnlen(d->packaging, sizeof d->packaging) == sizeof d->packaging)
    abort();
}

static void decide_spread(const review_policy_t *p) {
  static const char *const merchants[] = {"m-1", "m-unlisted", NULL};
  static const char *const currencies[] = {"CNY", "USD", "XXX"};
  static const char *const regions[] = {"CN-EAST", "nowhere", NULL};

  for (int reason = 0; reason <= AFTERSALES__V1__REASON__REASON_OTHER; reason++)
    for (int v = 0; v < 3; v++) {
      review_case_t c = {
          .case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_RETURN_REFUND,
          .reason = reason,
          .preferred_outcome = AFTERSALES__V1__OUTCOME__OUTCOME_REFUND,
          .return_method = v,
          .merchant_id = merchants[v],
          .currency = currencies[v],
          .region = regions[v],
          .lines = LINES + v,
          .nlines = 3 - (size_t)v,
          .claimed_minor = v == 2 ? INT64_MAX / 4 : 5000 * (v + 1),
          .delivered_at_us = v == 1 ? 0 : T0,
          .submitted_at_us = T0 + (v * 40 + 1) * DAY_US,
          .has_photo_or_video = v != 0,
          .declared_unused = v != 1,
          .first_order_at_us = T0 - 365 * DAY_US,
          .orders = 10 * v,
          .cases = 3 * v,
          .claims_on_order = v,
      };
      review_decision_t d;
      review_decide(p, &c, &d);
      check(&d);
      review_policy_shape(p, &c, &d);
      check(&d);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512] = "unset";
  review_policy_t *p = review_policy_parse((const char *)data, size, err, sizeof err);

  if (p == NULL) {
    if (err[0] == '\0' || strcmp(err, "unset") == 0) abort(); /* a refusal says why */
    return 0;
  }
  if (err[0] != '\0' || review_policy_version(p)[0] == '\0') abort();
  if (review_policy_region(p, NULL) == NULL || review_policy_region(p, "CN-EAST") == NULL ||
      review_policy_region(p, NULL)->warehouse == NULL ||
      review_policy_region(p, NULL)->address == NULL)
    abort();
  decide_spread(p);
  review_policy_free(p);
  return 0;
}
