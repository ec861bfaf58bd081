/* intake_money: what each line of an order was paid, as intake records it
 * when it opens a case.
 *
 * OrderPaid.amount_paid is allocated over ALL the order's lines and its
 * shipping fee with as_money_allocate (pro rata in integer minor units, the
 * remainder to the largest remainders, ties to the lower index), in one
 * fixed order: lines by line id in byte order (the batch view is sorted
 * COLLATE "C"), the shipping fee last. A line's weight is unit price x
 * quantity - discount, checked. The shares go into CaseOpened (paid_allocated,
 * shipping_paid) and the shared case tables, and are what review caps the
 * refunds of the case's lines at. An order not paid yet, a payment in
 * another currency than the lines or the fee, and amounts that do not fit in
 * int64 are refused here, so that whatever intake accepts review can decide. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "as_money.h"
#include "intake.h"

/* First row of lines whose order id is oid (rows sorted by order id), or -1. */
static int first_line(PGresult *lines, const char *oid) {
  int lo = 0, hi = PQntuples(lines);
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    if (strcmp(PQgetvalue(lines, mid, INTAKE_L_ORDER), oid) < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < PQntuples(lines) && strcmp(PQgetvalue(lines, lo, INTAKE_L_ORDER), oid) == 0 ? lo : -1;
}

static int64_t num(PGresult *r, int row, int col) {
  return strtoll(PQgetvalue(r, row, col), NULL, 10);
}

/* w[0..nl) the lines' weights, w[nl] the shipping fee; NULL or a reason. */
static const char *weights(PGresult *orders, int o, PGresult *lines, int first, int nl,
                           int64_t *w) {
  const char *cur = PQgetvalue(orders, o, INTAKE_O_PAID_CUR);
  for (int i = 0; i < nl; i++) {
    int row = first + i;
    if (strcmp(PQgetvalue(lines, row, INTAKE_L_CUR), cur) != 0) return "currency_mismatch";
    if (!as_money_mul(num(lines, row, INTAKE_L_UNIT), num(lines, row, INTAKE_L_QUANTITY), &w[i]) ||
        !as_money_sub(w[i], num(lines, row, INTAKE_L_DISCOUNT), &w[i]))
      return "amount_overflow";
  }
  w[nl] = 0;
  if (!PQgetisnull(orders, o, INTAKE_O_SHIP_FEE)) {
    w[nl] = num(orders, o, INTAKE_O_SHIP_FEE);
    if (w[nl] > 0 && strcmp(PQgetvalue(orders, o, INTAKE_O_SHIP_CUR), cur) != 0)
      return "currency_mismatch";
  }
  return NULL;
}

static int lines_of(PGresult *lines, int first, const char *oid) {
  int nl = 0;
  while (first + nl < PQntuples(lines) &&
         strcmp(PQgetvalue(lines, first + nl, INTAKE_L_ORDER), oid) == 0)
    nl++;
  return nl;
}

/* The shares of all nl lines and the fee, into share[0..nl]; NULL or a reason. */
static const char *split(PGresult *orders, int o, PGresult *lines, int first, int nl, int64_t *w,
                         int64_t *share) {
  const char *why = weights(orders, o, lines, first, nl, w);
  if (why) return why;
  int rc = as_money_allocate(strtoll(PQgetvalue(orders, o, INTAKE_O_PAID), NULL, 10), w,
                             (size_t)nl + 1, share);
  if (rc == -ERANGE) return "amount_overflow";
  return rc < 0 ? "payment_unallocatable" : NULL;
}

int intake_money_shares(PGresult *orders, int o, PGresult *lines, const int *rows, size_t n,
                        int64_t *line_paid, int64_t *shipping_paid, const char **why) {
  *why = NULL;
  if (PQgetisnull(orders, o, INTAKE_O_PAID)) {
    *why = "order_not_paid";
    return 0;
  }
  const char *oid = PQgetvalue(orders, o, INTAKE_O_ID);
  int first = first_line(lines, oid);
  int nl = first < 0 ? 0 : lines_of(lines, first, oid);
  int64_t *w = malloc(2 * ((size_t)nl + 1) * sizeof *w);
  if (!w) return -ENOMEM;
  *why = first < 0 ? "payment_unallocatable" : split(orders, o, lines, first, nl, w, w + nl + 1);
  if (!*why) {
    const int64_t *share = w + nl + 1;
    for (size_t i = 0; i < n; i++) line_paid[i] = share[rows[i] - first];
    *shipping_paid = share[nl];
  }
  free(w);
  return 0;
}

int intake_money_allocate(intake_req_t *q, PGresult *orders, int o, PGresult *lines,
                          const char **why) {
  q->line_paid = calloc(q->r->n_lines ? q->r->n_lines : 1, sizeof *q->line_paid);
  if (!q->line_paid) return -ENOMEM;
  int rc = intake_money_shares(orders, o, lines, q->line_rows, q->r->n_lines, q->line_paid,
                               &q->shipping_paid, why);
  if (rc == 0 && !*why) {
    q->paid_minor = num(orders, o, INTAKE_O_PAID);
    q->paid_currency = PQgetvalue(orders, o, INTAKE_O_PAID_CUR);
    q->paid = true;
  }
  return rc;
}
