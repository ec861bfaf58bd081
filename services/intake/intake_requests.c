/* intake_requests: the pipeline one batch of AfterSalesRequested goes
 * through, in the batch transaction:
 *   1. the payload on its own (intake_validate, a stamp ahead of intake's
 *      clock): dead-letter or reject;
 *   2. one case per key (intake_idem): the case id is derived from (buyer,
 *      key) and a batch's requests of one key are linked;
 *   3. the order rows are locked (FOR UPDATE, in order id order) so two
 *      instances cannot both claim the last unit of a line, then read with
 *      the units already claimed by cases that were not rejected; a request
 *      id answered before gets nothing; a key whose case exists by then
 *      (opened before, or by another instance that held the lock) is
 *      answered with that case or rejected as reused;
 *   4. each request is decided in batch order (claims of earlier requests
 *      count against later ones): hold (order not seen or not paid yet),
 *      reject or open; the amount paid is allocated over the order
 *      (intake_money);
 *   5. holds, cases and rejections are written and published; a CaseOpened
 *      carries the lines with prices and paid shares, the order's facts and
 *      the buyer's history (intake_history), all from this batch's reads;
 *      every answer is recorded.
 * Held requests replayed later come through the same pipeline.
 *
 * Submission stamps: a stamp before the order was placed, or more than
 * AS_INTAKE_CLOCK_SKEW_S ahead of intake's clock, is rejected. Windows are
 * judged on the vouched time: the stamp when it lies within
 * AS_INTAKE_STAMP_MAX_LAG_S before the request's arrival (arrived_us: the
 * broker's LogAppendTime when the topic stamps it, else intake's clock when
 * it first handled the request, kept while held), else the arrival. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_money.h"
#include "as_uuid.h"
#include "intake.h"

#define US 1000000LL

#define CT(x) AFTERSALES__V1__CASE_TYPE__CASE_TYPE_##x
#define RS(x) AFTERSALES__V1__REASON__REASON_##x

typedef struct batch_view {
  PGresult *orders; /* INTAKE_O_* columns (intake.h) */
  PGresult *lines;  /* INTAKE_L_* columns */
  int64_t *claimed; /* per line row: claimed so far, including this batch */
} batch_view_t;

/* The batch's orders (locked), then their lines, read over one column. */
static const as_col_t order_cols[] = {{"order_id", "text"}};
static const as_bulk_t sql_orders = AS_BULK(
    "SELECT order_id, buyer_id, coalesce(merchant_id, ''), cancelled_at_us IS NOT NULL,"
    " placed_at_us, coalesce(delivered_at_us, 0), amount_paid_minor, paid_currency,"
    " coalesce(payment_method, 0), coalesce(payment_ref, ''), coalesce(region, ''),"
    " shipping_fee_minor, shipping_currency FROM orders WHERE order_id = ANY({{$order_id}}) AND "
    "placed_at_us IS NOT NULL"
    " ORDER BY order_id COLLATE \"C\" FOR UPDATE",
    order_cols);
/* Claimed so far as a subquery per line, so that every plan of it, a
 * cached generic one included, looks the line up by index. */
static const as_bulk_t sql_lines = AS_BULK(
    "SELECT l.order_id, l.line_id, l.sku, l.unit_minor, l.currency, l.quantity,"
    " coalesce((SELECT sum(cl.quantity) FROM cases.case_lines cl JOIN cases.cases cc ON cc.case_id "
    "= cl.case_id"
    " WHERE cl.order_id = l.order_id AND cl.line_id = l.line_id AND cc.state <> 'REJECTED'"
    " AND cc.case_type <> 'COMPLAINT'), 0),"
    " l.category, l.supplier_id, l.discount_minor, l.lot_id FROM order_lines l"
    " WHERE l.order_id = ANY({{$order_id}}) ORDER BY l.order_id COLLATE \"C\", l.line_id COLLATE "
    "\"C\"",
    order_cols);

static void reject(intake_req_t *q, const char *code, const char *field) {
  q->fate = INTAKE_R_REJECT;
  q->v.code = code;
  snprintf(q->v.field, sizeof q->v.field, "%s", field);
}

/* Step 1, the case id and content hash of step 2. Returns 0 or -ENOMEM. */
static int validate_all(intake_t *x, intake_req_t *reqs, size_t n, int64_t now) {
  for (size_t i = 0; i < n; i++) {
    intake_req_t *q = &reqs[i];
    intake_validate_request(x, q->r, &q->v);
    if (q->v.dead) {
      char why[96];
      snprintf(why, sizeof why, "AfterSalesRequested: %s missing or unsafe", q->v.field);
      if (q->live) as_tx_reject(q->live, why);
      q->fate = INTAKE_R_SKIP;
      continue;
    }
    if (!q->v.code && q->r->submitted_at_us > now + x->conf->clock_skew_s * US)
      reject(q, "submitted_in_future", "submitted_at_us");
    if (q->v.code) {
      q->fate = INTAKE_R_REJECT;
      continue;
    }
    char name[256];
    int len = snprintf(name, sizeof name, "%s|%s", q->r->buyer_id, q->r->idempotency_key);
    as_uuid_v5(q->case_id, "aftersales.case", name, (size_t)len);
    if (intake_idem_hash(q->r, q->hash) < 0) return -ENOMEM;
  }
  return 0;
}

/* The time windows are judged on (see the file comment). */
static int64_t vouched(const intake_t *x, const intake_req_t *q) {
  int64_t stamp = q->r->submitted_at_us, lag = q->arrived_us - stamp;
  return lag >= 0 && lag <= x->conf->stamp_lag_s * US ? stamp : q->arrived_us;
}

static bool undecided(const intake_req_t *q) {
  return q->fate == INTAKE_R_PENDING || q->fate == INTAKE_R_FOLLOW;
}

/* Step 3. */
static int load_orders(as_tx_t *tx, intake_req_t *reqs, size_t n, batch_view_t *bv) {
  as_cols_t c;
  as_cols_init(&c, &sql_orders);
  for (size_t i = 0; i < n; i++)
    if (undecided(&reqs[i])) as_cols_str(&c, 0, reqs[i].r->order_id);
  int rc = as_cols_run(&c, as_tx_db(tx), &bv->orders);
  if (rc == 0 && bv->orders) rc = as_cols_run_stmt(&c, &sql_lines, as_tx_db(tx), &bv->lines);
  if (rc == 0 && bv->lines) {
    int nl = PQntuples(bv->lines);
    bv->claimed = calloc(nl ? (size_t)nl : 1, sizeof *bv->claimed);
    if (!bv->claimed) rc = -ENOMEM;
    for (int i = 0; rc == 0 && i < nl; i++)
      bv->claimed[i] = strtoll(PQgetvalue(bv->lines, i, INTAKE_L_CLAIMED), NULL, 10);
  }
  as_cols_free(&c);
  return rc;
}

/* First row of r whose columns 0 (and 1, if k2) equal the keys, or -1. */
static int find_row(PGresult *r, const char *k1, const char *k2) {
  int lo = 0, hi = r ? PQntuples(r) : 0;
  while (lo < hi) {
    int mid = lo + (hi - lo) / 2;
    int c = strcmp(PQgetvalue(r, mid, 0), k1);
    if (c == 0 && k2) c = strcmp(PQgetvalue(r, mid, 1), k2);
    if (c < 0)
      lo = mid + 1;
    else
      hi = mid;
  }
  if (!r || lo >= PQntuples(r) || strcmp(PQgetvalue(r, lo, 0), k1) != 0) return -1;
  if (k2 && strcmp(PQgetvalue(r, lo, 1), k2) != 0) return -1;
  return lo;
}

static bool needs_evidence(const Aftersales__V1__AfterSalesRequested *r) {
  if (r->case_type == CT(COMPLAINT) || r->case_type == CT(LOGISTICS)) return false;
  bool claim = r->case_type == CT(QUALITY_CLAIM) || r->reason == RS(QUALITY_DEFECT) ||
               r->reason == RS(DAMAGED_IN_TRANSIT) || r->reason == RS(NOT_AS_DESCRIBED);
  return claim && !as_envelope_has_photo_or_video(r->evidence, r->n_evidence);
}

static void route(const intake_t *x, intake_req_t *q, int64_t now) {
  const int64_t hour = 3600 * US;
  q->first_due_us = q->vouched_us + x->conf->first_response_min * 60 * US;
  switch (q->r->case_type) {
    case CT(LOGISTICS):
      snprintf(q->route, sizeof q->route, "logistics");
      q->pickup_due_us = now + x->conf->review_hours * hour;
      break;
    case CT(COMPLAINT):
      snprintf(q->route, sizeof q->route, "complaints:%s", x->dept[q->r->complaint_type]);
      q->resolution_due_us = now + x->dept_hours[q->r->complaint_type] * hour;
      break;
    default:
      snprintf(q->route, sizeof q->route, "review");
      q->review_due_us = now + x->conf->review_hours * hour;
      q->pickup_due_us = q->review_due_us;
  }
}

/* Lines exist, quantities fit, one currency, amounts fit in int64; fills
 * the claimed amount. */
static bool check_lines(intake_req_t *q, batch_view_t *bv) {
  bool claims = q->r->case_type != CT(COMPLAINT);
  int64_t total = 0;
  q->currency[0] = 0;
  for (size_t i = 0; i < q->r->n_lines; i++) {
    const Aftersales__V1__LineRef *l = q->r->lines[i];
    int row = find_row(bv->lines, q->r->order_id, l->line_id);
    if (row < 0) {
      reject(q, "unknown_line", "lines.line_id");
      return false;
    }
    if (l->sku[0] && strcmp(l->sku, PQgetvalue(bv->lines, row, INTAKE_L_SKU)) != 0) {
      reject(q, "unknown_line", "lines.sku");
      return false;
    }
    int64_t bought = strtoll(PQgetvalue(bv->lines, row, INTAKE_L_QUANTITY), NULL, 10);
    if (claims && l->quantity > bought - bv->claimed[row]) {
      reject(q, "quantity_exceeded", "lines.quantity");
      return false;
    }
    const char *cur = PQgetvalue(bv->lines, row, INTAKE_L_CUR);
    if (q->currency[0] && strcmp(q->currency, cur) != 0) {
      reject(q, "mixed_currency", "lines");
      return false;
    }
    snprintf(q->currency, sizeof q->currency, "%s", cur);
    int64_t unit = strtoll(PQgetvalue(bv->lines, row, INTAKE_L_UNIT), NULL, 10), sub;
    if (!as_money_mul(unit, l->quantity, &sub) || !as_money_add(total, sub, &total)) {
      reject(q, "amount_overflow", "lines.quantity");
      return false;
    }
    q->line_rows[i] = row;
  }
  q->claimed_minor = claims ? total : 0;
  return true;
}

/* The order's payment, for a request whose lines passed: a claim needs an
 * order paid in its lines' currency (else held while it may be, or
 * rejected); a complaint is about no money and records the payment only
 * when it has one. Returns 0 or -ENOMEM. */
static int check_paid(intake_req_t *q, batch_view_t *bv, int o, bool complaint) {
  const char *why;
  if (intake_money_allocate(q, bv->orders, o, bv->lines, &why) < 0) return -ENOMEM;
  if (!why || complaint) return 0;
  if (strcmp(why, "order_not_paid") == 0 && !q->final)
    q->fate = INTAKE_R_HOLD;
  else
    reject(q, why, strcmp(why, "amount_overflow") == 0 ? "lines" : "order_id");
  return 0;
}

/* An upper bound of the CaseOpened envelope a request would make: the
 * request's own bytes (lines, comment, evidence are copied), what each
 * claimed line adds from the order (twice its ids: LineRef and CaseLine),
 * the order facts, and a margin for the fixed fields and the envelope.
 * Bounding it here, before anything is written, answers the buyer with a
 * reason instead of making an outbox row the producer can never publish. */
static size_t opened_bound(const intake_req_t *q, PGresult *orders, int o, PGresult *lines) {
  size_t n = aftersales__v1__after_sales_requested__get_packed_size(q->r) + 4096;
  for (size_t i = 0; i < q->r->n_lines; i++) {
    int row = q->line_rows[i];
    n += 2 * strlen(q->r->lines[i]->line_id) + 2 * (size_t)PQgetlength(lines, row, INTAKE_L_SKU) +
         (size_t)PQgetlength(lines, row, INTAKE_L_CATEGORY) +
         (size_t)PQgetlength(lines, row, INTAKE_L_SUPPLIER) +
         2 * (size_t)PQgetlength(lines, row, INTAKE_L_CUR) + 96;
  }
  return n + (size_t)PQgetlength(orders, o, INTAKE_O_PAY_REF) +
         (size_t)PQgetlength(orders, o, INTAKE_O_REGION) +
         (size_t)PQgetlength(orders, o, INTAKE_O_MERCHANT);
}

/* The order facts a request is judged against before its lines. */
static const char *order_error(const intake_req_t *q, PGresult *orders, int o, bool complaint) {
  if (strcmp(PQgetvalue(orders, o, INTAKE_O_BUYER), q->r->buyer_id) != 0) return "not_buyers_order";
  if (!complaint && PQgetvalue(orders, o, INTAKE_O_CANCELLED)[0] == 't') return "order_cancelled";
  if (q->r->submitted_at_us < strtoll(PQgetvalue(orders, o, INTAKE_O_PLACED), NULL, 10))
    return "submitted_before_order";
  return NULL;
}

/* Step 4 for one request. Returns 0 or -ENOMEM. */
static int decide(intake_t *x, intake_req_t *q, batch_view_t *bv, int64_t now) {
  int o = find_row(bv->orders, q->r->order_id, NULL);
  if (o < 0) {
    if (q->final)
      reject(q, "unknown_order", "order_id");
    else
      q->fate = INTAKE_R_HOLD;
    return 0;
  }
  bool complaint = q->r->case_type == CT(COMPLAINT);
  const char *why = order_error(q, bv->orders, o, complaint);
  if (why) {
    reject(q, why, strcmp(why, "submitted_before_order") == 0 ? "submitted_at_us" : "order_id");
    return 0;
  }
  q->line_rows = calloc(q->r->n_lines ? q->r->n_lines : 1, sizeof *q->line_rows);
  if (!q->line_rows) return -ENOMEM;
  if (!check_lines(q, bv)) return 0;
  if ((long long)opened_bound(q, bv->orders, o, bv->lines) > as_worker_max_event_bytes(x->w)) {
    reject(q, "request_too_large", "lines");
    return 0;
  }
  int rc = check_paid(q, bv, o, complaint);
  if (rc < 0 || q->fate != INTAKE_R_PENDING) return rc;
  if (!complaint)
    for (size_t i = 0; i < q->r->n_lines; i++)
      bv->claimed[q->line_rows[i]] += q->r->lines[i]->quantity;
  q->merchant_id = PQgetvalue(bv->orders, o, INTAKE_O_MERCHANT);
  q->order_row = o;
  q->state = needs_evidence(q->r) ? AFTERSALES__V1__CASE_STATE__CASE_STATE_AWAITING_EVIDENCE
                                  : AFTERSALES__V1__CASE_STATE__CASE_STATE_OPEN;
  q->vouched_us = vouched(x, q);
  route(x, q, now);
  q->fate = INTAKE_R_OPEN;
  return 0;
}

/* Step 4: in batch order; a later request of a key follows the earlier one. */
static int decide_all(intake_t *x, intake_req_t *reqs, size_t n, batch_view_t *bv, int64_t now) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    intake_req_t *q = &reqs[i];
    if (q->fate == INTAKE_R_FOLLOW && intake_idem_follow(q)) continue;
    if (q->fate == INTAKE_R_FOLLOW) q->fate = INTAKE_R_PENDING;
    if (q->fate == INTAKE_R_PENDING) rc = decide(x, q, bv, now);
  }
  return rc;
}

static int publish_rejections(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const intake_req_t *q = &reqs[i];
    if (q->fate != INTAKE_R_REJECT) continue;
    rc = intake_reject_publish(x, tx, q->cause, q->r->request_id, q->r->order_id, q->r->buyer_id,
                               q->r->idempotency_key, q->v.code, q->v.field);
  }
  return rc;
}

/* Step 5 after the cases: a case another instance opened first is this
 * key's existing case; FOLLOW requests take their key's verdict. */
static int settle(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  int rc = intake_idem_existing(x, tx, reqs, n);
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_PENDING) {
      /* the case that won the race is gone again: nothing to answer with */
      AS_WARN(x->log, "request lost its key's case", AS_F_STR("request_id", reqs[i].r->request_id));
      reqs[i].fate = INTAKE_R_SKIP;
    }
  intake_idem_settle(reqs, n);
  return rc;
}

static void release(intake_req_t *reqs, size_t n, batch_view_t *bv) {
  for (size_t i = 0; i < n; i++) {
    free(reqs[i].line_rows);
    free(reqs[i].line_paid);
    reqs[i].line_rows = NULL;
    reqs[i].line_paid = NULL;
  }
  PQclear(bv->orders);
  PQclear(bv->lines);
  free(bv->claimed);
}

int intake_requests_run(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  batch_view_t bv = {0};
  int64_t now = as_now_us();
  int rc = validate_all(x, reqs, n, now);
  if (rc == 0) rc = intake_idem_group(reqs, n);
  /* Answers and existing cases are looked up only once the order rows are
   * locked: an instance that answered the same request id or opened the
   * same key commits before the lock is granted, and its answer and case
   * must be seen, not answered twice or counted as units already claimed. */
  if (rc == 0) rc = load_orders(tx, reqs, n, &bv);
  if (rc == 0) rc = intake_idem_lookup(x, tx, reqs, n);
  if (rc == 0) rc = decide_all(x, reqs, n, &bv, now);
  if (rc == 0) rc = intake_hold_store(x, tx, reqs, n);
  intake_view_t view = {bv.orders, bv.lines};
  if (rc == 0) rc = intake_cases_open(x, tx, reqs, n, &view);
  if (rc == 0) rc = settle(x, tx, reqs, n);
  if (rc == 0) rc = publish_rejections(x, tx, reqs, n);
  if (rc == 0) rc = intake_idem_answer(tx, reqs, n);
  release(reqs, n, &bv);
  return rc;
}

/* When the request reached the platform: the broker's clock if the topic
 * stamps LogAppendTime, else intake's own (a CreateTime is the producer's
 * word, i.e. the storefront's, no better than submitted_at_us). */
static int64_t arrival_of(const rd_kafka_message_t *rkm, int64_t now) {
  rd_kafka_timestamp_type_t type;
  int64_t ms = rd_kafka_message_timestamp(rkm, &type);
  return type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && ms > 0 ? ms * 1000 : now;
}

int intake_requests_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  intake_req_t *reqs = calloc(n ? n : 1, sizeof *reqs);
  if (!reqs) return -ENOMEM;
  int64_t now = as_now_us();
  for (size_t i = 0; i < n; i++)
    reqs[i] = (intake_req_t){.cause = msgs[i],
                             .live = msgs[i],
                             .r = msgs[i]->env->aftersales_requested,
                             .bytes = msgs[i]->rkm->payload,
                             .nbytes = msgs[i]->rkm->len,
                             .arrived_us = arrival_of(msgs[i]->rkm, now)};
  int rc = intake_requests_run(state, tx, reqs, n);
  free(reqs);
  return rc;
}
