/* as_money: checked arithmetic on amounts in minor units, and the one rule
 * that allocates what a buyer paid over an order's lines and shipping fee.
 *
 * Every money product and sum in the fleet goes through these helpers, so an
 * overflow is an answer (false / -ERANGE), never undefined behaviour or a
 * wrapped amount. Amounts are int64 minor units of one ISO 4217 currency;
 * the helpers never mix currencies (the caller checks the codes).
 *
 * Allocation (as_money_allocate): the amount paid is split over weights
 * w[0..n) (each line's unit price x quantity less its discount, then the
 * shipping fee) pro rata, in integer minor units: entry i first gets
 * floor(total x w[i] / W) (W = sum of w, computed in 128 bits, so no
 * intermediate overflows), and the minor units left over (fewer than n) go
 * one each to the entries with the largest remainder (total x w[i] mod W),
 * ties to the lower index. The caller fixes the order (intake: lines sorted
 * by line id in byte order, the shipping fee last), so every reader that
 * knows the same figures computes the same split, and the parts always add
 * up to the total exactly.
 *
 * Ownership: nothing is allocated; arrays are the caller's. */
#ifndef AS_MONEY_H
#define AS_MONEY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_err.h"

/* *out = a + b; false (and *out untouched) on overflow. */
AS_MUST_CHECK bool as_money_add(int64_t a, int64_t b, int64_t *out);
/* *out = a - b; false (and *out untouched) on overflow. */
AS_MUST_CHECK bool as_money_sub(int64_t a, int64_t b, int64_t *out);
/* *out = a * b; false (and *out untouched) on overflow. */
AS_MUST_CHECK bool as_money_mul(int64_t a, int64_t b, int64_t *out);
/* *sum = v[0] + ... + v[n-1]; false on overflow. */
AS_MUST_CHECK bool as_money_sum(const int64_t *v, size_t n, int64_t *sum);

/* floor(amount x part / whole) without intermediate overflow: the share of
 * part units out of whole. Returns 0, or -EINVAL if amount < 0, part < 0,
 * whole <= 0 or part > whole. */
AS_MUST_CHECK int as_money_share(int64_t amount, int64_t part, int64_t whole, int64_t *out);

/* Splits total over w[0..n) as described above into out[0..n). Returns 0,
 * or -EINVAL (total < 0, a negative weight, or total > 0 with every weight
 * 0), or -ERANGE (the weights' sum overflows int64). */
AS_MUST_CHECK int as_money_allocate(int64_t total, const int64_t *w, size_t n, int64_t *out);

/* Three upper-case ASCII letters (the shape of an ISO 4217 code). */
bool as_money_currency_ok(const char *code);

#endif
