/* Unit tests for as_money: checked add / sub / mul / sum at the int64
 * edges (an overflow is false and leaves the output untouched), share
 * without intermediate overflow, and the allocation of an amount paid over
 * lines and shipping: the two examples (one 10,000 line paid 8,000;
 * 800 x 2 + 5,000 + shipping 800 paid 100), parts that always add up to the
 * total, remainders to the largest remainder with ties to the lower index,
 * zero weights, and weights whose sum overflows (-ERANGE). Table-driven. */
#include "as_money.h"
#include "as_test.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

#define MAX INT64_MAX
#define MIN INT64_MIN

typedef bool (*op_fn)(int64_t, int64_t, int64_t *);

static const struct {
  const char *name;
  op_fn op;
  int64_t a, b;
  bool ok;
  int64_t want;
} ops[] = {
    {"add", as_money_add, 1, 2, true, 3},
    {"add", as_money_add, MAX, 0, true, MAX},
    {"add", as_money_add, MAX, 1, false, 0},
    {"add", as_money_add, MAX - 5, 5, true, MAX},
    {"add", as_money_add, MIN, -1, false, 0},
    {"add", as_money_add, 1LL << 62, 1LL << 62, false, 0},
    {"sub", as_money_sub, 10, 3, true, 7},
    {"sub", as_money_sub, 0, MAX, true, -MAX},
    {"sub", as_money_sub, MIN, 1, false, 0},
    {"sub", as_money_sub, MAX, -1, false, 0},
    {"mul", as_money_mul, 1999, 2, true, 3998},
    {"mul", as_money_mul, 1LL << 62, 2, false, 0},
    {"mul", as_money_mul, 1LL << 62, 4, false, 0},
    {"mul", as_money_mul, (1LL << 62) - 1, 2, true, MAX - 1},
    {"mul", as_money_mul, MAX, 1, true, MAX},
    {"mul", as_money_mul, MAX, 0, true, 0},
    {"mul", as_money_mul, MIN, -1, false, 0},
    {"mul", as_money_mul, 3037000500LL, 3037000500LL, false, 0},
    {"mul", as_money_mul, 3037000499LL, 3037000499LL, true, 9223372030926249001LL},
};

AS_TEST(checked_ops_at_the_edges) {
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    int64_t out = 42;
    bool ok = ops[i].op(ops[i].a, ops[i].b, &out);
    AS_CHECK_INT_EQ(ok, ops[i].ok);
    AS_CHECK_INT_EQ(out, ops[i].ok ? ops[i].want : 42); /* untouched on overflow */
  }
}

AS_TEST(sum_checks_every_step) {
  int64_t v[] = {MAX - 10, 5, 5}, s = 7;
  AS_CHECK(as_money_sum(v, 3, &s));
  AS_CHECK_INT_EQ(s, MAX);
  int64_t w[] = {MAX, 1, -1}; /* the running sum overflows before it would come back */
  s = 7;
  AS_CHECK(!as_money_sum(w, 3, &s));
  AS_CHECK_INT_EQ(s, 7);
  AS_CHECK(as_money_sum(w, 0, &s));
  AS_CHECK_INT_EQ(s, 0);
}

static const struct {
  int64_t amount, part, whole;
  int rc;
  int64_t want;
} shares[] = {
    {8000, 1, 1, 0, 8000},
    {100, 1600, 7400, 0, 21},        /* floor(100 x 1600 / 7400) = 21.6 -> 21 */
    {MAX, MAX - 1, MAX, 0, MAX - 1}, /* no intermediate overflow */
    {MAX, 1, MAX, 0, 1},
    {0, 5, 10, 0, 0},
    {-1, 1, 2, -EINVAL, 0},
    {10, -1, 2, -EINVAL, 0},
    {10, 3, 2, -EINVAL, 0},
    {10, 0, 0, -EINVAL, 0},
};

AS_TEST(share_floors_without_overflow) {
  for (size_t i = 0; i < sizeof shares / sizeof shares[0]; i++) {
    int64_t out = -7;
    AS_CHECK_INT_EQ(as_money_share(shares[i].amount, shares[i].part, shares[i].whole, &out),
                    shares[i].rc);
    AS_CHECK_INT_EQ(out, shares[i].rc == 0 ? shares[i].want : -7);
  }
}

#define NW 6
static const struct {
  const char *name;
  int64_t total;
  size_t n;
  int64_t w[NW];
  int rc;
  int64_t want[NW];
} allocs[] = {
    /* one 10,000 line (a coupon took 2,000), no shipping fee: the line got 8,000 */
    {"coupon", 8000, 2, {10000, 0}, 0, {8000, 0}},
    /* 800 x 2 + 5,000, shipping 800, paid 100: 21.62 / 67.57 / 10.81 ->
     * 21 / 67 / 10 = 98, the two units left go to the largest remainders
     * (0.81 shipping, 0.62 first line) */
    {"issue_two_lines_and_shipping", 100, 3, {1600, 5000, 800}, 0, {22, 67, 11}},
    {"paid_in_full", 7400, 3, {1600, 5000, 800}, 0, {1600, 5000, 800}},
    /* equal remainders: the lower index wins */
    {"ties_to_lower_index", 2, 3, {1, 1, 1}, 0, {1, 1, 0}},
    {"ties_again", 5, 4, {1, 1, 1, 1}, 0, {2, 1, 1, 1}},
    {"zero_weight_gets_nothing", 10, 3, {0, 3, 0}, 0, {0, 10, 0}},
    {"all_zero_nothing_paid", 0, 2, {0, 0}, 0, {0, 0}},
    {"all_zero_but_paid", 5, 2, {0, 0}, -EINVAL, {0}},
    {"negative_weight", 5, 2, {3, -1}, -EINVAL, {0}},
    {"negative_total", -1, 2, {3, 1}, -EINVAL, {0}},
    {"weights_overflow", 100, 2, {MAX, 1}, -ERANGE, {0}},
    {"weights_2_62_twice", 100, 3, {1LL << 62, 1LL << 62, 0}, -ERANGE, {0}},
    /* big amounts: total x w[i] needs 128 bits */
    {"large", MAX, 2, {MAX - 1, 1}, 0, {MAX - 1, 1}},
    {"thirds", 100, 3, {1, 1, 1}, 0, {34, 33, 33}},
};

AS_TEST(allocate_examples_and_edges) {
  for (size_t i = 0; i < sizeof allocs / sizeof allocs[0]; i++) {
    int64_t out[NW] = {0};
    int rc = as_money_allocate(allocs[i].total, allocs[i].w, allocs[i].n, out);
    if (rc != allocs[i].rc) AS_CHECK_STR_EQ(allocs[i].name, "");
    AS_CHECK_INT_EQ(rc, allocs[i].rc);
    if (rc != 0) continue;
    int64_t sum = 0;
    for (size_t k = 0; k < allocs[i].n; k++) {
      if (out[k] != allocs[i].want[k]) AS_CHECK_STR_EQ(allocs[i].name, "");
      AS_CHECK_INT_EQ(out[k], allocs[i].want[k]);
      sum += out[k];
    }
    AS_CHECK_INT_EQ(sum, allocs[i].total);
  }
}

/* Whatever the weights, the parts add up to the total exactly, no part
 * exceeds its weight when the total does not exceed the weights' sum, and
 * the same input always gives the same split. */
AS_TEST(allocate_always_sums_to_total) {
  uint64_t seed = 88172645463325252ULL;
  for (int round = 0; round < 2000; round++) {
    int64_t w[NW], out[NW], again[NW], wsum = 0;
    size_t n = 1 + (size_t)(round % NW);
    for (size_t k = 0; k < n; k++) {
      seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
      w[k] = (int64_t)(seed % 1000000);
      wsum += w[k];
    }
    seed ^= seed << 13, seed ^= seed >> 7, seed ^= seed << 17;
    int64_t total = wsum ? (int64_t)(seed % (uint64_t)(wsum + 1)) : 0;
    AS_CHECK_INT_EQ(as_money_allocate(total, w, n, out), 0);
    AS_CHECK_INT_EQ(as_money_allocate(total, w, n, again), 0);
    int64_t sum = 0;
    for (size_t k = 0; k < n; k++) {
      AS_CHECK(out[k] >= 0 && out[k] <= w[k]);
      AS_CHECK_INT_EQ(out[k], again[k]);
      sum += out[k];
    }
    AS_CHECK_INT_EQ(sum, total);
  }
}

AS_TEST(currency_codes) {
  static const struct {
    const char *code;
    bool ok;
  } c[] = {{"CNY", true},   {"USD", true}, {"cny", false}, {"CN", false},
           {"CNYY", false}, {"", false},   {"C1Y", false}};
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
    AS_CHECK_INT_EQ(as_money_currency_ok(c[i].code), c[i].ok);
  AS_CHECK(!as_money_currency_ok(NULL));
}
