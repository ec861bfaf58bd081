/* as_money: checked minor-unit arithmetic and the paid-amount allocation
 * (the rule is documented in as_money.h and in the README). */
#include "as_money.h"

#include <errno.h>
#include <string.h>

bool as_money_add(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (__builtin_add_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool as_money_sub(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (__builtin_sub_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool as_money_mul(int64_t a, int64_t b, int64_t *out) {
  int64_t r;
  if (__builtin_mul_overflow(a, b, &r)) return false;
  *out = r;
  return true;
}

bool as_money_sum(const int64_t *v, size_t n, int64_t *sum) {
  int64_t s = 0;
  for (size_t i = 0; i < n; i++)
    if (!as_money_add(s, v[i], &s)) return false;
  *sum = s;
  return true;
}

int as_money_share(int64_t amount, int64_t part, int64_t whole, int64_t *out) {
  if (amount < 0 || part < 0 || whole <= 0 || part > whole) return -EINVAL;
  /* amount x part < 2^126: exact in 128 bits; the quotient <= amount. */
  *out = (int64_t)(((__int128)amount * part) / whole);
  return 0;
}

int as_money_allocate(int64_t total, const int64_t *w, size_t n, int64_t *out) {
  if (total < 0) return -EINVAL;
  int64_t wsum = 0;
  for (size_t i = 0; i < n; i++) {
    if (w[i] < 0) return -EINVAL;
    if (!as_money_add(wsum, w[i], &wsum)) return -ERANGE;
  }
  if (wsum == 0) {
    if (total > 0) return -EINVAL;
    for (size_t i = 0; i < n; i++) out[i] = 0;
    return 0;
  }
  int64_t given = 0;
  for (size_t i = 0; i < n; i++) {
    out[i] = (int64_t)(((__int128)total * w[i]) / wsum);
    given += out[i]; /* <= total: no overflow */
  }
  /* Fewer than n units are left; each goes to the largest remainder not yet
   * served, ties to the lower index. O(n x left) is fine for order sizes. */
  for (int64_t left = total - given; left > 0; left--) {
    size_t best = n;
    int64_t best_rem = -1;
    for (size_t i = 0; i < n; i++) {
      int64_t rem = (int64_t)(((__int128)total * w[i]) % wsum);
      /* an entry already topped up has rem marked as served below */
      if (rem > best_rem && out[i] * (__int128)wsum <= (__int128)total * w[i]) {
        best = i;
        best_rem = rem;
      }
    }
    if (best == n) return -ERANGE; /* cannot happen: kept for safety against misuse */
    out[best]++;
  }
  return 0;
}

bool as_money_currency_ok(const char *code) {
  if (!code || strlen(code) != 3) return false;
  for (int i = 0; i < 3; i++)
    if (code[i] < 'A' || code[i] > 'Z') return false;
  return true;
}
