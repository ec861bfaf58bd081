/* review_money: refunds, exchanges and coupons.
 *
 * Finance books every RefundIssued it reads, so a refund must be right the
 * first time and never repeated: its id is derived from the case (one
 * refund per case, enforced by a unique constraint), or for a supplier
 * alert's compensation from the case and the compensation (one per
 * compensation id: a case's second refund), and its amount is cut
 * per order line to what the ledger says is left of what was paid. The
 * ledger rows are locked for the computation, and the refund lines charge
 * the ledger through a trigger whose CHECK refuses any overdraft, so even a
 * crafted sequence of events cannot refund more than was paid. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_log.h"
#include "as_money.h"
#include "as_topics.h"
#include "as_uuid.h"
#include "review.h"

typedef struct left left_t;

typedef struct pay_line {
  const char *line_id, *sku;
  int32_t quantity; /* units claimed */
  int64_t want;     /* what those units were paid (see unit_share) */
  int64_t give;     /* what this refund gives back on the line */
  int32_t units;    /* units this refund gives back (ITEMS only) */
  left_t *led;      /* the ledger entry this line draws on, or NULL */
} pay_line_t;

/* One ledger row, shared by every refund of the batch that draws on it, so
 * two cases on one order line see each other: what is left of what was
 * paid, and the units refunded so far. */
struct left {
  const char *order_id, *line_id;
  int64_t paid, left;
  int32_t purchased, units;
};

static int left_cmp(const void *a, const void *b) {
  const left_t *x = a, *y = b;
  int c = strcmp(x->order_id, y->order_id);
  return c ? c : strcmp(x->line_id, y->line_id);
}

static left_t *left_find(left_t *tab, size_t n, const char *order_id, const char *line_id) {
  left_t key = {.order_id = order_id, .line_id = line_id};
  return n ? bsearch(&key, tab, n, sizeof *tab, left_cmp) : NULL;
}

/* Every ledger row of the orders refunded, not only the claimed lines: the
 * shipping fee's share depends on what the whole order has had back. */
static const as_col_t left_cols[] = {{"order_id", "text"}};
static const as_bulk_t sql_left = AS_BULK(
    "SELECT order_id, line_id, paid_minor, paid_minor - refunded_minor, purchased, refunded_units"
    " FROM ledger WHERE order_id = ANY({{$order_id}}) ORDER BY order_id, line_id FOR UPDATE",
    left_cols);

static long long col(PGresult *r, size_t row, int c) {
  return strtoll(PQgetvalue(r, (int)row, c), NULL, 10);
}

/* The ledger rows, locked in key order; *res keeps the strings tab points
 * into. */
static int read_left(as_tx_t *tx, review_pay_t *p, size_t n, PGresult **res, left_t **tab,
                     size_t *ntab) {
  as_cols_t k;
  as_cols_init(&k, &sql_left);
  for (size_t i = 0; i < n; i++) as_cols_str(&k, 0, p[i].rec->order_id);
  int rc = as_cols_run(&k, as_tx_db(tx), res);
  as_cols_free(&k);
  if (rc < 0) return rc;
  size_t rows = *res ? (size_t)PQntuples(*res) : 0;
  *tab = calloc(rows + 1, sizeof **tab);
  if (!*tab) return -ENOMEM;
  for (size_t r = 0; r < rows; r++)
    (*tab)[r] = (left_t){
        PQgetvalue(*res, (int)r, 0), PQgetvalue(*res, (int)r, 1), col(*res, r, 2), col(*res, r, 3),
        (int32_t)col(*res, r, 4),    (int32_t)col(*res, r, 5)};
  qsort(*tab, rows, sizeof **tab, left_cmp);
  *ntab = rows;
  return 0;
}

/* What k more units of a line cost, after the units already refunded:
 * share(paid, before + k, Q) - share(paid, before, Q), shares flooring.
 * The steps add up to the line's whole allocation once all Q units are
 * back, so no unit loses its fen to rounding and none gets more. k is cut
 * to the units still unrefunded. */
static int64_t unit_share(const left_t *l, int32_t *k) {
  int64_t after, before;
  if (*k > l->purchased - l->units) *k = l->purchased - l->units;
  if (*k <= 0 || as_money_share(l->paid, l->units + *k, l->purchased, &after) < 0 ||
      as_money_share(l->paid, l->units, l->purchased, &before) < 0)
    return *k = 0, 0;
  return after - before;
}

/* A ledger row written before units were counted (purchased 0) keeps the
 * rule it was seeded under: unit price x units, cut to what is left. */
static int64_t line_want(const left_t *led, const review_line_t *l, int32_t *k) {
  int64_t want;
  if (led->purchased > 0) return unit_share(led, k);
  *k = 0;
  return as_money_mul(l->unit_minor, l->quantity, &want) ? want : 0;
}

static int64_t room_of(const pay_line_t *l) {
  return l->led ? l->led->left : 0;
}
static int64_t min64(int64_t a, int64_t b) {
  return a < b ? a : b;
}

/* Spreads amount over the lines by as_money_allocate with what each line's
 * claimed units were paid as the weights, amount first cut to their sum;
 * each line is capped by what is left of it, and what a cap held back goes
 * to lines that still have room. scratch holds 2n entries. Returns what
 * could be placed (<= amount, so the sums cannot overflow). */
static int64_t spread(pay_line_t *pl, size_t n, int64_t amount, int64_t *scratch) {
  int64_t *w = scratch, *out = scratch + n, claimed = 0, placed = 0;
  for (size_t i = 0; i < n; i++) w[i] = pl[i].want;
  if (!as_money_sum(w, n, &claimed) || claimed <= 0) return 0;
  amount = min64(amount, claimed);
  if (as_money_allocate(amount, w, n, out) < 0) return 0;
  for (size_t i = 0; i < n; i++) pl[i].give = min64(out[i], room_of(&pl[i])), placed += pl[i].give;
  for (size_t i = 0; i < n && placed < amount; i++) {
    int64_t more = min64(amount - placed, min64(room_of(&pl[i]), pl[i].want) - pl[i].give);
    if (more > 0) pl[i].give += more, placed += more;
  }
  return placed;
}

/* What the order's items have had back so far, over its ledger rows. */
static int64_t order_refunded(const left_t *tab, size_t ntab, const char *order_id) {
  int64_t sum = 0;
  for (size_t i = 0; i < ntab; i++)
    if (strcmp(tab[i].order_id, order_id) == 0 && strcmp(tab[i].line_id, "#shipping") != 0)
      sum += tab[i].paid - tab[i].left; /* <= the amount paid: the ledger's CHECK */
  return sum;
}

/* The shipping fee's part of a seller-fault refund. The refund that
 * completes the order's items gets what is left of the fee; one that covers
 * part of the order follows shipping_refund: whole (what is left), none
 * (0) or pro_rata (share(fee allocation, items refunded after, items paid)
 * - share(..., before, ...): the steps add up to the whole allocation once
 * every item is back). */
static int64_t shipping_part(const review_rec_t *rec, const left_t *ship, int64_t before,
                             int64_t after) {
  int64_t items_paid, a, b;
  if (!ship || ship->left <= 0) return 0;
  if (!as_money_sub(rec->paid_minor, rec->shipping_paid_minor, &items_paid) ||
      after >= items_paid || rec->shipping_refund == REVIEW_SHIP_WHOLE || rec->shipping_refund == 0)
    return ship->left;
  if (rec->shipping_refund == REVIEW_SHIP_NONE) return 0;
  if (as_money_share(ship->paid, after, items_paid, &a) < 0 ||
      as_money_share(ship->paid, before, items_paid, &b) < 0)
    return 0;
  return min64(a - b, ship->left);
}

typedef struct refund_sum {
  char id[AS_UUID_STRLEN + 1];
  int64_t items, shipping, goodwill, total;
  pay_line_t *pl; /* rec->c.nlines entries, inside the batch's array */
} refund_sum_t;

/* ITEMS: each claimed line gives what its units were paid, cut to what is
 * left of it. */
static void compute_items(pay_line_t *pl, size_t n, refund_sum_t *s) {
  for (size_t i = 0; i < n; i++) {
    pl[i].give = min64(pl[i].want, room_of(&pl[i]));
    s->items += pl[i].give; /* each give <= its line's paid amount; their sum <= the amount paid */
  }
}

/* REMAINDER: each line gives everything left of it, all its units not yet
 * refunded. */
static void compute_remainder(pay_line_t *pl, size_t n, refund_sum_t *s) {
  for (size_t i = 0; i < n; i++) {
    pl[i].give = room_of(&pl[i]);
    pl[i].units = pl[i].led ? pl[i].led->purchased - pl[i].led->units : 0;
    if (pl[i].units < 0) pl[i].units = 0;
    pl[i].quantity = pl[i].units;
    s->items += pl[i].give; /* each <= its line's paid amount */
  }
}

/* What one refund is made of, each part cut to what is left, and charged
 * to the shared ledger entries at once. */
static void compute(const review_pay_t *p, refund_sum_t *s, left_t *tab, size_t ntab,
                    int64_t *scratch) {
  const review_rec_t *rec = p->rec;
  pay_line_t *pl = s->pl;
  int64_t before = order_refunded(tab, ntab, rec->order_id);
  bool units = p->kind == REVIEW_PAY_ITEMS || p->kind == REVIEW_PAY_REMAINDER;
  if (p->kind == REVIEW_PAY_ITEMS) {
    compute_items(pl, rec->c.nlines, s);
  } else if (p->kind == REVIEW_PAY_REMAINDER) {
    compute_remainder(pl, rec->c.nlines, s);
  } else {
    int64_t placed = spread(pl, rec->c.nlines, p->amount_minor < 0 ? 0 : p->amount_minor, scratch);
    if (p->kind == REVIEW_PAY_GOODWILL)
      s->goodwill = placed;
    else
      s->items = placed;
  }
  for (size_t i = 0; i < rec->c.nlines; i++)
    if (pl[i].led) {
      pl[i].led->left -= pl[i].give;
      pl[i].led->units += units ? pl[i].units : 0;
      if (!units) pl[i].units = 0;
    }
  left_t *ship = left_find(tab, ntab, rec->order_id, "#shipping");
  if (p->kind == REVIEW_PAY_ITEMS && p->with_shipping)
    s->shipping = shipping_part(rec, ship, before, order_refunded(tab, ntab, rec->order_id));
  if (ship) ship->left -= s->shipping;
  s->total =
      s->items + s->shipping + s->goodwill; /* parts of one order's amount paid: no overflow */
}

enum {
  RF_ID,
  RF_CASE,
  RF_ORDER,
  RF_CUR,
  RF_ITEMS,
  RF_SHIPPING,
  RF_GOODWILL,
  RF_TOTAL,
  RF_REASON,
  RF_COMPENSATION
};
static const as_col_t refund_cols[] = {
    [RF_ID] = {"refund_id", "uuid"},
    [RF_CASE] = {"case_id", "text"},
    [RF_ORDER] = {"order_id", "text"},
    [RF_CUR] = {"currency", "text"},
    [RF_ITEMS] = {"items_minor", "bigint"},
    [RF_SHIPPING] = {"shipping_minor", "bigint"},
    [RF_GOODWILL] = {"goodwill_minor", "bigint"},
    [RF_TOTAL] = {"total_minor", "bigint"},
    [RF_REASON] = {"reason_code", "text"},
    [RF_COMPENSATION] = {"compensation_id", "uuid"},
};
static const as_bulk_t sql_refunds = AS_BULK(
    "INSERT INTO refunds (refund_id, case_id, order_id, currency, items_minor, shipping_minor,"
    " goodwill_minor, total_minor, reason_code, compensation_id)"
    " SELECT * FROM {{u}} ON CONFLICT DO NOTHING RETURNING refund_id::text",
    refund_cols);

enum { RL_ID, RL_ORDER, RL_LINE, RL_AMOUNT, RL_QTY };
static const as_col_t refund_line_cols[] = {
    [RL_ID] = {"refund_id", "uuid"}, [RL_ORDER] = {"order_id", "text"},
    [RL_LINE] = {"line_id", "text"}, [RL_AMOUNT] = {"amount_minor", "bigint"},
    [RL_QTY] = {"quantity", "int"},
};
static const as_bulk_t sql_refund_lines = AS_BULK(
    "INSERT INTO refund_lines (refund_id, order_id, line_id, amount_minor, quantity) SELECT * FROM "
    "{{u}}",
    refund_line_cols);

static void refund_row(as_cols_t *c, const review_pay_t *p, const refund_sum_t *s) {
  as_cols_str(c, RF_ID, s->id);
  as_cols_str(c, RF_CASE, p->rec->case_id);
  as_cols_str(c, RF_ORDER, p->rec->order_id);
  as_cols_str(c, RF_CUR, p->rec->c.currency);
  as_cols_int(c, RF_ITEMS, s->items);
  as_cols_int(c, RF_SHIPPING, s->shipping);
  as_cols_int(c, RF_GOODWILL, s->goodwill);
  as_cols_int(c, RF_TOTAL, s->total);
  as_cols_str(c, RF_REASON, p->reason_code);
  as_cols_str(c, RF_COMPENSATION, p->compensation_id); /* NULL: the case's own */
}

static void line_row(as_cols_t *c, const char *id, const char *order_id, const char *line_id,
                     int64_t give, int32_t units) {
  as_cols_str(c, RL_ID, id);
  as_cols_str(c, RL_ORDER, order_id);
  as_cols_str(c, RL_LINE, line_id);
  as_cols_int(c, RL_AMOUNT, give);
  as_cols_int(c, RL_QTY, units);
}

static void line_rows(as_cols_t *c, const review_pay_t *p, const refund_sum_t *s) {
  for (size_t j = 0; j < p->rec->c.nlines; j++)
    if (s->pl[j].give > 0 || s->pl[j].units > 0)
      line_row(c, s->id, p->rec->order_id, s->pl[j].line_id, s->pl[j].give, s->pl[j].units);
  if (s->shipping > 0) line_row(c, s->id, p->rec->order_id, "#shipping", s->shipping, 0);
}

/* Inserts the refunds with something to pay; fresh[i] says which were new
 * (a case refunded before keeps its one refund). */
static int insert_refunds(as_tx_t *tx, review_pay_t *p, refund_sum_t *s, size_t n, bool *fresh) {
  as_cols_t head, lines;
  as_cols_init(&head, &sql_refunds);
  as_cols_init(&lines, &sql_refund_lines);
  for (size_t i = 0; i < n; i++)
    if (s[i].total > 0) refund_row(&head, &p[i], &s[i]);
  PGresult *r = NULL;
  int rc = as_cols_run(&head, as_tx_db(tx), &r);
  size_t at = 0; /* RETURNING keeps the input's order: each search starts after the last match */
  for (int j = 0; rc == 0 && r && n && j < PQntuples(r); j++)
    for (size_t k = 0; k < n; k++) {
      size_t i = (at + k) % n;
      if (!fresh[i] && s[i].total > 0 && strcmp(s[i].id, PQgetvalue(r, j, 0)) == 0) {
        fresh[i] = true;
        at = i + 1;
        break;
      }
    }
  PQclear(r);
  for (size_t i = 0; i < n; i++)
    if (fresh[i]) line_rows(&lines, &p[i], &s[i]);
  if (rc == 0) rc = as_cols_run(&lines, as_tx_db(tx), NULL);
  as_cols_free(&head);
  as_cols_free(&lines);
  return rc;
}

static int publish_refund(as_tx_t *tx, const review_pay_t *p, const refund_sum_t *s) {
  const review_rec_t *rec = p->rec;
  size_t n = rec->c.nlines, k = 0;
  Aftersales__V1__RefundLine *lines = calloc(n + 1, sizeof *lines);
  Aftersales__V1__RefundLine **lp = calloc(n + 1, sizeof *lp);
  Aftersales__V1__Money *amts = calloc(n + 1, sizeof *amts);
  if (!lines || !lp || !amts) {
    free(lines), free(lp), free(amts);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    if (s->pl[i].give <= 0) continue;
    aftersales__v1__refund_line__init(&lines[k]);
    amts[k] = review_money(s->pl[i].give, rec->c.currency);
    lines[k].line_id = (char *)s->pl[i].line_id;
    lines[k].sku = (char *)s->pl[i].sku;
    lines[k].quantity = s->pl[i].quantity;
    lines[k].amount = &amts[k];
    lp[k] = &lines[k];
    k++;
  }
  Aftersales__V1__Money items = review_money(s->items, rec->c.currency),
                        ship = review_money(s->shipping, rec->c.currency),
                        gw = review_money(s->goodwill, rec->c.currency),
                        total = review_money(s->total, rec->c.currency);
  Aftersales__V1__RefundIssued ri = AFTERSALES__V1__REFUND_ISSUED__INIT;
  ri.refund_id = (char *)s->id;
  ri.case_id = (char *)rec->case_id;
  ri.order_id = (char *)rec->order_id;
  ri.buyer_id = (char *)rec->buyer_id;
  ri.n_lines = k;
  ri.lines = lp;
  ri.items_amount = &items;
  ri.shipping_amount = &ship;
  ri.goodwill_amount = &gw;
  ri.total = &total;
  ri.method = rec->payment_method;
  ri.payment_ref = (char *)rec->payment_ref;
  ri.issued_at_us = as_now_us();
  ri.reason_code = (char *)p->reason_code;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_REFUND_ISSUED;
  env.refund_issued = &ri;
  int rc = review_publish(tx, p->cause, AS_TOPIC_NAME_REFUNDS, rec->case_id, rec->order_id, &env);
  free(lines), free(lp), free(amts);
  return rc;
}

/* Builds every refund's lines against the shared ledger entries, in order,
 * so a later refund of the batch on the same line sees the earlier one. */
static void plan(review_pay_t *p, size_t n, refund_sum_t *s, pay_line_t *pl, left_t *tab,
                 size_t ntab, int64_t *scratch) {
  size_t at = 0;
  for (size_t i = 0; i < n; i++) {
    const review_rec_t *rec = p[i].rec;
    s[i].pl = &pl[at];
    for (size_t j = 0; j < rec->c.nlines; j++) {
      const review_line_t *l = &rec->c.lines[j];
      pay_line_t *x = &pl[at++];
      *x = (pay_line_t){.line_id = l->line_id,
                        .sku = l->sku,
                        .quantity = l->quantity,
                        .units = l->quantity,
                        .led = left_find(tab, ntab, rec->order_id, l->line_id)};
      x->want = x->led ? line_want(x->led, l, &x->units) : 0;
    }
    compute(&p[i], &s[i], tab, ntab, scratch);
    char name[512];
    size_t len = p[i].compensation_id
                     ? review_money_id_name(name, sizeof name, rec->case_id, p[i].compensation_id)
                     : 0;
    if (len)
      as_uuid_v5(s[i].id, "aftersales.refund", name, len);
    else /* the case's own refund (a compensation's name always fits: checked before) */
      as_uuid_v5(s[i].id, "aftersales.refund", rec->case_id, strlen(rec->case_id));
  }
}

size_t review_money_id_name(char *out, size_t cap, const char *case_id,
                            const char *compensation_id) {
  int len = compensation_id ? snprintf(out, cap, "%s|%s", case_id, compensation_id)
                            : snprintf(out, cap, "%s", case_id);
  return len < 0 || (size_t)len >= cap ? 0 : (size_t)len;
}

int review_money_refund_many(review_t *x, as_tx_t *tx, review_pay_t *p, size_t n) {
  size_t nl = 0;
  for (size_t i = 0; i < n; i++) nl += p[i].rec->c.nlines, p[i].paid = 0;
  refund_sum_t *s = calloc(n + 1, sizeof *s);
  pay_line_t *pl = calloc(nl + 1, sizeof *pl);
  bool *fresh = calloc(n + 1, sizeof *fresh);
  int64_t *scratch =
      calloc(2 * nl + 1, sizeof *scratch); /* spread's weights and shares, per refund */
  left_t *tab = NULL;
  size_t ntab = 0;
  PGresult *res = NULL;
  int rc = s && pl && fresh && scratch ? read_left(tx, p, n, &res, &tab, &ntab) : -ENOMEM;
  if (rc == 0) plan(p, n, s, pl, tab, ntab, scratch);
  if (rc == 0) rc = insert_refunds(tx, p, s, n, fresh);
  for (size_t i = 0; rc == 0 && i < n; i++) {
    if (!fresh[i]) continue;
    rc = publish_refund(tx, &p[i], &s[i]);
    p[i].paid = s[i].total;
    as_counter_add(x->refunds, 1);
    if (p[i].kind == REVIEW_PAY_ITEMS && s[i].items < p[i].amount_minor)
      as_counter_add(x->refund_minor_capped, 1);
  }
  PQclear(res);
  free(s), free(pl), free(fresh), free(tab), free(scratch);
  return rc;
}

int review_money_refund(review_t *x, as_tx_t *tx, const as_msg_t *cause, const review_rec_t *rec,
                        review_pay_kind_t kind, int64_t amount_minor, bool with_shipping,
                        const char *reason_code, int64_t *paid) {
  review_pay_t p = {.cause = cause,
                    .rec = rec,
                    .kind = kind,
                    .amount_minor = amount_minor,
                    .with_shipping = with_shipping,
                    .reason_code = reason_code};
  int rc = review_money_refund_many(x, tx, &p, 1);
  *paid = p.paid;
  return rc;
}

/* An exchange or a coupon happens once per case: the row insert (insert,
 * ON CONFLICT DO NOTHING RETURNING) decides which call is the one (*done),
 * and only that call publishes env on refunds.v1 and counts it. */
static int publish_once(as_tx_t *tx, const as_msg_t *cause, const review_rec_t *rec,
                        const char *insert, int nvals, const char *const *vals,
                        Aftersales__V1__Envelope *env, as_counter_t *count, bool *done) {
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx), insert, nvals, vals, &r);
  *done = rc == 0 && PQntuples(r) == 1;
  PQclear(r);
  if (rc < 0 || !*done) return rc;
  rc = review_publish(tx, cause, AS_TOPIC_NAME_REFUNDS, rec->case_id, rec->order_id, env);
  if (rc == 0) as_counter_add(count, 1);
  return rc;
}

int review_money_exchange(review_t *x, as_tx_t *tx, const as_msg_t *cause, const review_rec_t *rec,
                          bool *done) {
  return review_money_exchange_for(x, tx, cause, rec, NULL, done);
}

int review_money_exchange_for(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                              const review_rec_t *rec, const char *reason_code, bool *done) {
  char id[AS_UUID_STRLEN + 1];
  as_uuid_v5(id, "aftersales.exchange", rec->case_id, strlen(rec->case_id));
  const char *vals[2] = {id, rec->case_id};
  size_t n = rec->c.nlines;
  Aftersales__V1__LineRef *refs = calloc(n + 1, sizeof *refs);
  Aftersales__V1__LineRef **rp = calloc(n + 1, sizeof *rp);
  *done = false;
  if (!refs || !rp) {
    free(refs), free(rp);
    return -ENOMEM;
  }
  for (size_t i = 0; i < n; i++) {
    aftersales__v1__line_ref__init(&refs[i]);
    refs[i].line_id = (char *)rec->c.lines[i].line_id;
    refs[i].sku = (char *)rec->c.lines[i].sku;
    refs[i].quantity = rec->c.lines[i].quantity;
    rp[i] = &refs[i];
  }
  Aftersales__V1__ExchangeRequested ex = AFTERSALES__V1__EXCHANGE_REQUESTED__INIT;
  ex.exchange_id = id;
  ex.case_id = (char *)rec->case_id;
  ex.order_id = (char *)rec->order_id;
  ex.n_replacement_lines = n;
  ex.replacement_lines = rp;
  ex.ship_to_region = (char *)rec->c.region;
  ex.requested_at_us = as_now_us();
  if (reason_code) ex.reason_code = (char *)reason_code;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_EXCHANGE_REQUESTED;
  env.exchange_requested = &ex;
  int rc = publish_once(tx, cause, rec,
                        "INSERT INTO exchanges (exchange_id, case_id) VALUES ($1, $2)"
                        " ON CONFLICT DO NOTHING RETURNING exchange_id",
                        2, vals, &env, x->exchanges, done);
  free(refs), free(rp);
  return rc;
}

#define COUPON_VALID_US (90LL * 86400 * 1000000)

int review_money_coupon(review_t *x, as_tx_t *tx, const as_msg_t *cause, const review_rec_t *rec,
                        int64_t value_minor, bool *done) {
  return review_money_coupon_for(x, tx, cause, rec, value_minor, NULL, done);
}

int review_money_coupon_for(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                            const review_rec_t *rec, int64_t value_minor,
                            const char *compensation_id, bool *done) {
  *done = false;
  if (value_minor <= 0) return 0;
  char id[AS_UUID_STRLEN + 1], val[24], name[512];
  size_t len =
      compensation_id ? review_money_id_name(name, sizeof name, rec->case_id, compensation_id) : 0;
  if (len)
    as_uuid_v5(id, "aftersales.coupon", name, len);
  else
    as_uuid_v5(id, "aftersales.coupon", rec->case_id, strlen(rec->case_id));
  snprintf(val, sizeof val, "%lld", (long long)value_minor);
  const char *vals[5] = {id, rec->case_id, rec->c.currency, val, compensation_id};
  Aftersales__V1__Money v = review_money(value_minor, rec->c.currency);
  Aftersales__V1__CouponIssued ci = AFTERSALES__V1__COUPON_ISSUED__INIT;
  ci.coupon_id = id;
  ci.case_id = (char *)rec->case_id;
  ci.buyer_id = (char *)rec->buyer_id;
  ci.value = &v;
  ci.expires_at_us = as_now_us() + COUPON_VALID_US;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_COUPON_ISSUED;
  env.coupon_issued = &ci;
  return publish_once(tx, cause, rec,
                      "INSERT INTO coupons (coupon_id, case_id, currency, value_minor,"
                      " compensation_id) VALUES ($1, $2, $3, $4, $5::uuid)"
                      " ON CONFLICT DO NOTHING RETURNING coupon_id",
                      5, vals, &env, x->coupons, done);
}
