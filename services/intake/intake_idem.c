/* intake_idem: every request gets exactly one answer, and one idempotency
 * key stands for one request content (Stripe's semantics).
 *
 * - A request id is answered once: (buyer, request id) goes into
 *   intake.answers with its answer; the same request id again (a new event
 *   id: a resend, not a redelivery the inbox catches), in the batch or
 *   later, or while it is held, gets nothing and is counted
 *   (as_intake_requests_repeated_total) and logged.
 * - A key's case is the case id derived from (buyer, key). Its request's
 *   content hash is kept in intake.requests. A later request under the key
 *   with the same content (a retry under a new request id) is answered with
 *   BuyerAcknowledged naming the existing case and the NEW request id; with
 *   other content it is rejected as idempotency_key_reused; while the key's
 *   first request is held (its order not seen or not paid yet) it is
 *   rejected as idempotency_key_in_progress (Stripe's 409: retry later).
 * - Within one batch the requests of one key are linked in batch order:
 *   the first is decided, each later one takes the verdict of the nearest
 *   earlier one that opened or holds the key's case, or is decided on its
 *   own when all earlier ones were rejected.
 *
 * The content hash covers every field but request_id and submitted_at_us (a
 * storefront retry restamps the request; the stamp is no part of what was
 * asked for), as the packed protobuf (protobuf-c packs fields in number
 * order, so equal content packs to equal bytes), hashed to a UUIDv5
 * (SHA-1, as_uuid_v5 namespace "aftersales.request.content"). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_uuid.h"
#include "intake.h"

/* Per request (its index i in the batch): its request id answered before
 * or held; its key's case number and content hash; its key held. Scalar
 * subqueries with LIMIT, so that each is an index lookup: a join against
 * the unnest, or an EXISTS, may be planned as a hash over the whole of
 * cases.cases or intake.answers (a sequential scan per batch). */
enum { LK_INDEX, LK_BUYER, LK_REQUEST, LK_CASE, LK_KEY };
static const as_col_t lookup_cols[] = {
    [LK_INDEX] = {"i", "int"},
    [LK_BUYER] = {"buyer_id", "text"},
    [LK_REQUEST] = {"request_id", "text"},
    [LK_CASE] = {"case_id", "text"},
    [LK_KEY] = {"idempotency_key", "text"},
};
static const as_bulk_t sql_lookup = AS_BULK(
    "SELECT u.i, (SELECT true FROM answers a WHERE a.buyer_id = u.buyer_id AND a.request_id = "
    "u.request_id"
    " LIMIT 1) IS NOT NULL OR (SELECT true FROM held_requests h WHERE h.request_id = u.request_id "
    "LIMIT 1)"
    " IS NOT NULL, (SELECT case_number FROM cases.cases c WHERE c.case_id = u.case_id LIMIT 1),"
    " coalesce((SELECT content_hash FROM requests r WHERE r.case_id = u.case_id LIMIT 1), ''),"
    " (SELECT true FROM held_requests h WHERE h.buyer_id = u.buyer_id AND h.idempotency_key ="
    " u.idempotency_key LIMIT 1) IS NOT NULL FROM {{u}}",
    lookup_cols);
enum { AN_BUYER, AN_REQUEST, AN_ANSWER, AN_CASE };
static const as_col_t answer_cols[] = {
    [AN_BUYER] = {"buyer_id", "text"},
    [AN_REQUEST] = {"request_id", "text"},
    [AN_ANSWER] = {"answer", "text"},
    [AN_CASE] = {"case_id", "text"},
};
static const as_bulk_t sql_answer = AS_BULK(
    "INSERT INTO answers (buyer_id, request_id, answer, case_id) SELECT * FROM {{u}} ON CONFLICT "
    "DO NOTHING",
    answer_cols);

int intake_idem_hash(const Aftersales__V1__AfterSalesRequested *r, char out[37]) {
  Aftersales__V1__AfterSalesRequested c = *r;
  c.request_id = (char *)"";
  c.submitted_at_us = 0;
  size_t len = aftersales__v1__after_sales_requested__get_packed_size(&c);
  uint8_t *buf = malloc(len ? len : 1);
  if (!buf) return -ENOMEM;
  aftersales__v1__after_sales_requested__pack(&c, buf);
  as_uuid_v5(out, "aftersales.request.content", buf, len);
  free(buf);
  return 0;
}

static void reject(intake_req_t *q, const char *code, const char *field) {
  q->fate = INTAKE_R_REJECT;
  q->v.code = code;
  snprintf(q->v.field, sizeof q->v.field, "%s", field);
}

static bool answerable(const intake_req_t *q) {
  return q->live &&
         (q->fate == INTAKE_R_PENDING || q->fate == INTAKE_R_FOLLOW || q->fate == INTAKE_R_REJECT);
}

static void repeat(intake_t *x, intake_req_t *q) {
  q->fate = INTAKE_R_SKIP;
  as_counter_add(x->repeated, 1);
  AS_INFO(x->log, "request id already answered; no second answer",
          AS_F_STR("request_id", q->r->request_id), AS_F_STR("event_id", q->cause->env->event_id));
}

static int by_request(const void *a, const void *b) {
  const intake_req_t *const *p = a, *const *q = b;
  int c = strcmp((*p)->r->buyer_id, (*q)->r->buyer_id);
  if (!c) c = strcmp((*p)->r->request_id, (*q)->r->request_id);
  return c ? c : ((*p) < (*q) ? -1 : (*p) > (*q));
}

/* The batch's own repeats of a (buyer, request id): all but the first. */
static int repeats_in_batch(intake_t *x, intake_req_t *reqs, size_t n) {
  intake_req_t **v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (answerable(&reqs[i])) v[k++] = &reqs[i];
  qsort(v, k, sizeof *v, by_request);
  for (size_t i = 1; i < k; i++)
    if (strcmp(v[i]->r->buyer_id, v[i - 1]->r->buyer_id) == 0 &&
        strcmp(v[i]->r->request_id, v[i - 1]->r->request_id) == 0)
      repeat(x, v[i]);
  free(v);
  return 0;
}

static int by_case_id(const void *a, const void *b) {
  const intake_req_t *const *p = a, *const *q = b;
  int c = strcmp((*p)->case_id, (*q)->case_id);
  return c ? c : ((*p) < (*q) ? -1 : (*p) > (*q));
}

int intake_idem_group(intake_req_t *reqs, size_t n) {
  intake_req_t **v = malloc((n ? n : 1) * sizeof *v);
  if (!v) return -ENOMEM;
  size_t k = 0;
  for (size_t i = 0; i < n; i++)
    if (reqs[i].fate == INTAKE_R_PENDING) v[k++] = &reqs[i];
  qsort(v, k, sizeof *v, by_case_id); /* ties in batch order: reqs is in batch order */
  for (size_t i = 1; i < k; i++)
    if (strcmp(v[i]->case_id, v[i - 1]->case_id) == 0) {
      v[i]->prev = v[i - 1];
      v[i]->fate = INTAKE_R_FOLLOW;
    }
  free(v);
  return 0;
}

/* q against the key's existing case or held request (row of sql_lookup). */
static void against_existing(intake_t *x, intake_req_t *q, PGresult *r, int row) {
  if (PQgetisnull(r, row, 2)) {
    reject(q, "idempotency_key_in_progress", "idempotency_key");
    return;
  }
  const char *h = PQgetvalue(r, row, 3);
  snprintf(q->case_hash, sizeof q->case_hash, "%s", h[0] ? h : q->hash);
  snprintf(q->case_number, sizeof q->case_number, "%s", PQgetvalue(r, row, 2));
  if (strcmp(q->case_hash, q->hash) != 0) {
    reject(q, "idempotency_key_reused", "idempotency_key");
    return;
  }
  q->fate = INTAKE_R_ACK;
  as_counter_add(x->duplicates, 1);
}

static bool unresolved(const intake_req_t *q, bool first) {
  return q->fate == INTAKE_R_PENDING || (first && q->fate == INTAKE_R_FOLLOW);
}

/* One lookup for the batch: first, every answerable request (repeats of an
 * answered request id are skipped) and the unresolved ones against their
 * key; later (first false), the PENDING ones against their key only. */
static int lookup(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n, bool first) {
  as_cols_t c;
  as_cols_init(&c, &sql_lookup);
  for (size_t i = 0; i < n; i++) {
    const intake_req_t *q = &reqs[i];
    bool ask = first ? answerable(q) : unresolved(q, false);
    if (!ask) continue;
    as_cols_int(&c, LK_INDEX, (long long)i);
    as_cols_str(&c, LK_BUYER, q->r->buyer_id);
    as_cols_str(&c, LK_REQUEST, q->r->request_id);
    as_cols_str(&c, LK_CASE, unresolved(q, first) ? q->case_id : "");
    as_cols_str(&c, LK_KEY, q->r->idempotency_key);
  }
  PGresult *r = NULL;
  int rc = as_cols_run(&c, as_tx_db(tx), &r);
  for (int row = 0; rc == 0 && r && row < PQntuples(r); row++) {
    intake_req_t *q = &reqs[strtol(PQgetvalue(r, row, 0), NULL, 10)];
    if (first && PQgetvalue(r, row, 1)[0] == 't')
      repeat(x, q);
    else if (unresolved(q, first) && (!PQgetisnull(r, row, 2) || PQgetvalue(r, row, 4)[0] == 't'))
      against_existing(x, q, r, row);
  }
  PQclear(r);
  as_cols_free(&c);
  return rc;
}

int intake_idem_lookup(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  int rc = repeats_in_batch(x, reqs, n);
  return rc ? rc : lookup(x, tx, reqs, n, true);
}

int intake_idem_existing(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n) {
  return lookup(x, tx, reqs, n, false);
}

/* The nearest earlier request of q's key that opened, holds or answers for
 * the key's case (rejected ones had no effect on the key), or NULL. */
static intake_req_t *owner_of(intake_req_t *q) {
  intake_req_t *p = q->prev;
  while (p && (p->fate == INTAKE_R_REJECT || p->fate == INTAKE_R_SKIP)) p = p->prev;
  return p;
}

bool intake_idem_follow(intake_req_t *q) {
  intake_req_t *p = owner_of(q);
  if (!p) return false;
  if (p->fate == INTAKE_R_HOLD) reject(q, "idempotency_key_in_progress", "idempotency_key");
  return true; /* OPEN (or a FOLLOW of one): settled once the case is open */
}

void intake_idem_settle(intake_req_t *reqs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    intake_req_t *q = &reqs[i];
    if (q->fate == INTAKE_R_OPEN && !q->case_hash[0])
      snprintf(q->case_hash, sizeof q->case_hash, "%s", q->hash);
    if (q->fate != INTAKE_R_FOLLOW) continue;
    intake_req_t *p = owner_of(q);
    if (!p || (p->fate != INTAKE_R_OPEN && p->fate != INTAKE_R_ACK)) {
      reject(q, "idempotency_key_in_progress", "idempotency_key");
      continue;
    }
    snprintf(q->case_hash, sizeof q->case_hash, "%s", p->case_hash);
    snprintf(q->case_number, sizeof q->case_number, "%s", p->case_number);
    if (strcmp(q->hash, p->case_hash) != 0)
      reject(q, "idempotency_key_reused", "idempotency_key");
    else
      q->fate = INTAKE_R_ACK;
  }
}

int intake_idem_answer(as_tx_t *tx, intake_req_t *reqs, size_t n) {
  as_cols_t c;
  as_cols_init(&c, &sql_answer);
  int rc = 0;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    const intake_req_t *q = &reqs[i];
    if (q->fate == INTAKE_R_ACK) rc = intake_cases_ack(tx, q);
    /* an OPEN request's answer is recorded with its case (intake_cases) */
    if (q->fate != INTAKE_R_ACK && q->fate != INTAKE_R_REJECT) continue;
    bool rejected = q->fate == INTAKE_R_REJECT;
    as_cols_str(&c, AN_BUYER, q->r->buyer_id);
    as_cols_str(&c, AN_REQUEST, q->r->request_id);
    as_cols_str(&c, AN_ANSWER, rejected ? q->v.code : "acknowledged");
    as_cols_str(&c, AN_CASE, rejected ? NULL : q->case_id);
  }
  if (rc == 0) rc = as_cols_run(&c, as_tx_db(tx), NULL);
  as_cols_free(&c);
  return rc;
}
