/* Unit tests for intake_idem without a database: the content hash (equal
 * for a retry that changes only request_id and submitted_at_us, different
 * for any other field), and the settling of one batch's requests of one key
 * (group, follow, settle): a retry takes the first request's case, other
 * content is refused as reused, requests behind a held one are told to
 * retry, and a key whose earlier requests were all rejected is decided
 * afresh. */
#include "../../services/intake/intake.h"
#include "as_test.h"

#include <string.h>

static Aftersales__V1__AfterSalesRequested request(const char *rid, int64_t at,
                                                   const char *comment) {
  Aftersales__V1__AfterSalesRequested r = AFTERSALES__V1__AFTER_SALES_REQUESTED__INIT;
  r.request_id = (char *)rid;
  r.idempotency_key = "key-1";
  r.order_id = "o-1";
  r.buyer_id = "b-1";
  r.case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_RETURN_REFUND;
  r.reason = AFTERSALES__V1__REASON__REASON_SIZE_MISMATCH;
  r.comment = (char *)comment;
  r.submitted_at_us = at;
  return r;
}

AS_TEST(hash_ignores_request_id_and_stamp_only) {
  Aftersales__V1__AfterSalesRequested a = request("r-1", 100, "too small"),
                                      b = request("r-2", 999, "too small"),
                                      c = request("r-1", 100, "too big");
  char ha[37], hb[37], hc[37];
  AS_CHECK_INT_EQ(intake_idem_hash(&a, ha), 0);
  AS_CHECK_INT_EQ(intake_idem_hash(&b, hb), 0);
  AS_CHECK_INT_EQ(intake_idem_hash(&c, hc), 0);
  AS_CHECK_STR_EQ(ha, hb);
  AS_CHECK(strcmp(ha, hc) != 0);
  /* the caller's request is untouched */
  AS_CHECK_STR_EQ(a.request_id, "r-1");
  AS_CHECK_INT_EQ(a.submitted_at_us, 100);
  Aftersales__V1__AfterSalesRequested d = request("r-1", 100, "too small");
  d.declared_unused = 1;
  char hd[37];
  AS_CHECK_INT_EQ(intake_idem_hash(&d, hd), 0);
  AS_CHECK(strcmp(ha, hd) != 0);
}

/* Four requests of one key in batch order, with the given content hashes. */
static void batch(intake_req_t q[4], const char *const hashes[4]) {
  memset(q, 0, 4 * sizeof *q);
  for (int i = 0; i < 4; i++) {
    strcpy(q[i].case_id, "c-1");
    strcpy(q[i].hash, hashes[i]);
  }
}

AS_TEST(batch_retry_follows_the_opened_request) {
  intake_req_t q[4];
  batch(q, (const char *const[]){"h1", "h1", "h2", "h1"});
  AS_CHECK_INT_EQ(intake_idem_group(q, 4), 0);
  AS_CHECK_INT_EQ(q[0].fate, INTAKE_R_PENDING);
  for (int i = 1; i < 4; i++) AS_CHECK_INT_EQ(q[i].fate, INTAKE_R_FOLLOW);
  q[0].fate = INTAKE_R_OPEN; /* decided, then opened */
  strcpy(q[0].case_number, "AS-20260101-0000001");
  for (int i = 1; i < 4; i++) AS_CHECK(intake_idem_follow(&q[i]));
  intake_idem_settle(q, 4);
  AS_CHECK_INT_EQ(q[1].fate, INTAKE_R_ACK);
  AS_CHECK_STR_EQ(q[1].case_number, "AS-20260101-0000001");
  AS_CHECK_INT_EQ(q[2].fate, INTAKE_R_REJECT);
  AS_CHECK_STR_EQ(q[2].v.code, "idempotency_key_reused");
  AS_CHECK_INT_EQ(q[3].fate, INTAKE_R_ACK); /* behind a reused one: still the opened case */
}

AS_TEST(batch_behind_a_held_request_is_in_progress) {
  intake_req_t q[4];
  batch(q, (const char *const[]){"h1", "h1", "h1", "h1"});
  AS_CHECK_INT_EQ(intake_idem_group(q, 4), 0);
  q[0].fate = INTAKE_R_HOLD;
  AS_CHECK(intake_idem_follow(&q[1]));
  AS_CHECK_INT_EQ(q[1].fate, INTAKE_R_REJECT);
  AS_CHECK_STR_EQ(q[1].v.code, "idempotency_key_in_progress");
}

AS_TEST(batch_after_rejections_decides_afresh) {
  intake_req_t q[4];
  batch(q, (const char *const[]){"h1", "h2", "h2", "h2"});
  AS_CHECK_INT_EQ(intake_idem_group(q, 4), 0);
  q[0].fate = INTAKE_R_REJECT; /* e.g. quantity_exceeded: the key stays free */
  AS_CHECK(!intake_idem_follow(&q[1]));
  q[1].fate = INTAKE_R_OPEN;
  AS_CHECK(intake_idem_follow(&q[2]));
  intake_idem_settle(q, 4);
  AS_CHECK_INT_EQ(q[2].fate, INTAKE_R_ACK);
  AS_CHECK_INT_EQ(q[3].fate, INTAKE_R_ACK);
}
