/* Unit tests for intake_validate without a database, table-driven: every
 * reason code request validation gives (README "Reason codes"; the dead
 * contract_violation of a request nobody can be answered for) from a
 * minimal change to one valid request, each with the field it names;
 * requests at the limits that must pass; the first fault wins; and the text
 * and attachments of follow-ups (EvidenceAdded, BuyerMessage), which name
 * their own fields. The limits are read from the configuration the test
 * builds (main.c's defaults), so a row sits on the boundary whatever the
 * values. */
#include "../../services/intake/intake.h"
#include "as_test.h"

#include <stdio.h>
#include <string.h>

/* main.c's defaults (AS_INTAKE_*): the validator reads only these. */
static const intake_conf_t conf = {
    .comment_max = 2000,
    .evidence_max = 9,
    .attachment_max = 524288000,
    .lines_max = 100,
    .complaint_hours = 72,
};
static const intake_t x = {.conf = &conf};

#define NLINES 101 /* lines_max + 1 */
#define NATT 10    /* evidence_max + 1 */
#define BIG 4096   /* comment_max + 1, a URI of 2,049 bytes */

typedef struct req {
  Aftersales__V1__AfterSalesRequested r;
  Aftersales__V1__LineRef line[NLINES], *lines[NLINES];
  char line_id[NLINES][24];
  Aftersales__V1__Attachment att[NATT], *atts[NATT];
  char big[BIG + 1];
} req_t;

static void set_lines(req_t *q, size_t n) {
  for (size_t i = 0; i < n; i++) {
    Aftersales__V1__LineRef l = AFTERSALES__V1__LINE_REF__INIT;
    snprintf(q->line_id[i], sizeof q->line_id[i], "l%zu", i + 1);
    l.line_id = q->line_id[i];
    l.sku = "SKU-1";
    l.quantity = 1;
    q->line[i] = l;
    q->lines[i] = &q->line[i];
  }
  q->r.lines = q->lines;
  q->r.n_lines = n;
}

static void set_atts(req_t *q, size_t n) {
  for (size_t i = 0; i < n; i++) {
    Aftersales__V1__Attachment a = AFTERSALES__V1__ATTACHMENT__INIT;
    a.uri = "https://img.example.com/p/1.jpg";
    a.media_type = "image/jpeg";
    a.size_bytes = 1000;
    a.sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    q->att[i] = a;
    q->atts[i] = &q->att[i];
  }
  q->r.evidence = q->atts;
  q->r.n_evidence = n;
}

/* A valid return-and-refund request: one line, one photo, a comment. */
static void base(req_t *q) {
  memset(q, 0, sizeof *q);
  Aftersales__V1__AfterSalesRequested r = AFTERSALES__V1__AFTER_SALES_REQUESTED__INIT;
  r.request_id = "r-1";
  r.idempotency_key = "key-1";
  r.order_id = "o-1";
  r.buyer_id = "b-1";
  r.case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_RETURN_REFUND;
  r.reason = AFTERSALES__V1__REASON__REASON_SIZE_MISMATCH;
  r.comment = "尺码偏小";
  r.preferred_outcome = AFTERSALES__V1__OUTCOME__OUTCOME_REFUND;
  r.return_method = AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_PICKUP;
  r.submitted_at_us = 1767225600000000;
  r.locale = "zh-CN";
  q->r = r;
  set_lines(q, 1);
  set_atts(q, 1);
}

/* q->big: n bytes of c. */
static char *fill(req_t *q, char c, size_t n) {
  memset(q->big, c, n);
  q->big[n] = '\0';
  return q->big;
}

/* q->big: "https://" and 'a's, n bytes in all. */
static char *uri_of(req_t *q, size_t n) {
  fill(q, 'a', n);
  memcpy(q->big, "https://", 8);
  return q->big;
}

static void complaint(req_t *q) {
  q->r.case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_COMPLAINT;
  q->r.complaint_type = AFTERSALES__V1__COMPLAINT_TYPE__COMPLAINT_TYPE_DELIVERY;
  q->r.reason = AFTERSALES__V1__REASON__REASON_UNSPECIFIED;
  q->r.preferred_outcome = AFTERSALES__V1__OUTCOME__OUTCOME_NONE;
  q->r.return_method = AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_UNSPECIFIED;
  set_lines(q, 0);
}

/* One change to the base request per row. */
#define MUT(name, body)        \
  static void name(req_t *q) { \
    body;                      \
  }

MUT(m_none, (void)q)
MUT(m_complaint_no_lines, complaint(q))
MUT(m_complaint_with_lines, complaint(q); set_lines(q, 2))
MUT(m_no_locale, q->r.locale = "")
MUT(m_locale_script, q->r.locale = "zh-Hans-CN")
MUT(m_locale_2, q->r.locale = "en")
MUT(m_locale_35, q->r.locale = fill(q, 'a', 35))
MUT(m_no_comment, q->r.comment = "")
MUT(m_comment_max, q->r.comment = fill(q, 'x', (size_t)conf.comment_max))
MUT(m_no_evidence, set_atts(q, 0))
MUT(m_evidence_max, set_atts(q, (size_t)conf.evidence_max))
MUT(m_lines_max, set_lines(q, (size_t)conf.lines_max))
MUT(m_idem_128, q->r.idempotency_key = fill(q, '~', 128))
MUT(m_idem_punct, q->r.idempotency_key = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~")
MUT(m_ids_64, q->r.request_id = q->r.buyer_id = q->r.order_id = fill(q, 'Z', 64))
MUT(m_sku_64, q->line[0].sku = fill(q, 's', 64))
MUT(m_sku_utf8, q->line[0].sku = "T恤-白-XL")
MUT(m_quantity_big, q->line[0].quantity = 2147483647)
MUT(m_outcome_max, q->r.preferred_outcome = AFTERSALES__V1__OUTCOME__OUTCOME_NONE)
MUT(m_method_max, q->r.return_method = AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_EXPRESS)
MUT(m_reason_max, q->r.reason = AFTERSALES__V1__REASON__REASON_OTHER)
MUT(m_type_max_non_complaint, q->r.case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_LOGISTICS)
MUT(m_video, q->att[0].media_type = "video/quicktime")
MUT(m_size_max, q->att[0].size_bytes = conf.attachment_max)
MUT(m_size_1, q->att[0].size_bytes = 1)
MUT(m_uri_9, q->att[0].uri = "https://a")
MUT(m_uri_max, q->att[0].uri = uri_of(q, 2048))
MUT(m_uri_utf8, q->att[0].uri = "https://img.example.com/图片/1.jpg")
MUT(m_stamp_1, q->r.submitted_at_us = 1)

MUT(m_rid_empty, q->r.request_id = "")
MUT(m_rid_unsafe, q->r.request_id = "r 1")
MUT(m_rid_65, q->r.request_id = fill(q, 'r', 65))
MUT(m_bid_empty, q->r.buyer_id = "")
MUT(m_bid_unsafe, q->r.buyer_id = "b/1")
MUT(m_both_ids, q->r.request_id = ""; q->r.buyer_id = "")
MUT(m_idem_empty, q->r.idempotency_key = "")
MUT(m_idem_space, q->r.idempotency_key = "key 1")
MUT(m_idem_tab, q->r.idempotency_key = "key\t1")
MUT(m_idem_del, q->r.idempotency_key = "key\x7f")
MUT(m_idem_utf8, q->r.idempotency_key = "ключ")
MUT(m_idem_129, q->r.idempotency_key = fill(q, 'k', 129))
MUT(m_order_empty, q->r.order_id = "")
MUT(m_order_unsafe, q->r.order_id = "o/1")
MUT(m_order_65, q->r.order_id = fill(q, 'o', 65))
MUT(m_type_zero, q->r.case_type = AFTERSALES__V1__CASE_TYPE__CASE_TYPE_UNSPECIFIED)
MUT(m_type_above,
    q->r.case_type = (Aftersales__V1__CaseType)(AFTERSALES__V1__CASE_TYPE__CASE_TYPE_COMPLAINT + 1))
MUT(m_type_negative, q->r.case_type = (Aftersales__V1__CaseType)-1)
MUT(m_reason_zero, q->r.reason = AFTERSALES__V1__REASON__REASON_UNSPECIFIED)
MUT(m_reason_above,
    q->r.reason = (Aftersales__V1__Reason)(AFTERSALES__V1__REASON__REASON_OTHER + 1))
MUT(m_complaint_type_zero, complaint(q);
    q->r.complaint_type = AFTERSALES__V1__COMPLAINT_TYPE__COMPLAINT_TYPE_UNSPECIFIED)
MUT(m_complaint_type_above, complaint(q);
    q->r.complaint_type =
        (Aftersales__V1__ComplaintType)(AFTERSALES__V1__COMPLAINT_TYPE__COMPLAINT_TYPE_OTHER + 1))
MUT(m_complaint_type_on_return,
    q->r.complaint_type =
        (Aftersales__V1__ComplaintType)(AFTERSALES__V1__COMPLAINT_TYPE__COMPLAINT_TYPE_OTHER + 1))
MUT(m_complaint_reason_above, complaint(q);
    q->r.reason = (Aftersales__V1__Reason)(AFTERSALES__V1__REASON__REASON_OTHER + 1))
MUT(m_outcome_above,
    q->r.preferred_outcome = (Aftersales__V1__Outcome)(AFTERSALES__V1__OUTCOME__OUTCOME_NONE + 1))
MUT(m_method_above,
    q->r.return_method =
        (Aftersales__V1__ReturnMethod)(AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_EXPRESS + 1))
MUT(m_stamp_zero, q->r.submitted_at_us = 0)
MUT(m_stamp_negative, q->r.submitted_at_us = -1)
MUT(m_locale_1, q->r.locale = "z")
MUT(m_locale_underscore, q->r.locale = "zh_CN")
MUT(m_locale_36, q->r.locale = fill(q, 'a', 36))
MUT(m_no_lines, set_lines(q, 0))
MUT(m_too_many_lines, set_lines(q, (size_t)conf.lines_max + 1))
MUT(m_line_id_empty, q->line[0].line_id = "")
MUT(m_line_id_unsafe, q->line[0].line_id = "l 1")
MUT(m_quantity_zero, q->line[0].quantity = 0)
MUT(m_quantity_negative, q->line[0].quantity = -1)
MUT(m_sku_65, q->line[0].sku = fill(q, 's', 65))
MUT(m_sku_bad_utf8, q->line[0].sku = "SKU-\xff")
MUT(m_duplicate_line, set_lines(q, 3); q->line[2].line_id = "l1")
MUT(m_comment_overlong, q->r.comment = "\xc0\xaf")
MUT(m_comment_surrogate, q->r.comment = "ok \xed\xa0\x80")
MUT(m_comment_truncated, q->r.comment = "尺码偏\xe5\xb0")
MUT(m_comment_too_long, q->r.comment = fill(q, 'x', (size_t)conf.comment_max + 1))
MUT(m_comment_multibyte_too_long, /* 667 characters, 2,001 bytes */
    for (size_t i = 0; i < 667; i++) memcpy(q->big + 3 * i, "码", 3);
    q->big[2001] = '\0'; q->r.comment = q->big)
MUT(m_too_many_atts, set_atts(q, (size_t)conf.evidence_max + 1))
MUT(m_uri_empty, q->att[0].uri = "")
MUT(m_uri_http, q->att[0].uri = "http://img.example.com/p/1.jpg")
MUT(m_uri_scheme_only, q->att[0].uri = "https://")
MUT(m_uri_space, q->att[0].uri = "https://img.example.com/p 1.jpg")
MUT(m_uri_newline, q->att[0].uri = "https://img.example.com/p/1.jpg\r\nX-Injected: 1")
MUT(m_uri_del, q->att[0].uri = "https://img.example.com/\x7f")
MUT(m_uri_bad_utf8, q->att[0].uri = "https://img.example.com/\xc3")
MUT(m_uri_too_long, q->att[0].uri = uri_of(q, 2049))
MUT(m_media_gif, q->att[0].media_type = "image/gif")
MUT(m_media_empty, q->att[0].media_type = "")
MUT(m_media_suffix, q->att[0].media_type = "image/jpeg; q=1")
MUT(m_sha_63, q->att[0].sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcde")
MUT(m_sha_65,
    q->att[0].sha256 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0")
MUT(m_sha_upper,
    q->att[0].sha256 = "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef")
MUT(m_sha_not_hex,
    q->att[0].sha256 = "g123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef")
MUT(m_size_zero, q->att[0].size_bytes = 0)
MUT(m_size_negative, q->att[0].size_bytes = -1)
MUT(m_size_above, q->att[0].size_bytes = conf.attachment_max + 1)
MUT(m_third_att_bad, set_atts(q, 3); q->att[2].size_bytes = 0)

MUT(m_order_and_locale, q->r.order_id = ""; q->r.locale = "z")
MUT(m_idem_and_order, q->r.idempotency_key = ""; q->r.order_id = "")
MUT(m_enum_order, q->r.reason = (Aftersales__V1__Reason)99;
    q->r.return_method = (Aftersales__V1__ReturnMethod)99)
MUT(m_lines_before_comment, q->line[0].quantity = 0; q->r.comment = "\xff")
MUT(m_utf8_before_length, q->r.comment = fill(q, 'x', (size_t)conf.comment_max + 1);
    q->big[0] = '\xff')
MUT(m_comment_before_evidence, q->r.comment = "\xff"; q->att[0].uri = "")
MUT(m_too_many_before_each, set_atts(q, (size_t)conf.evidence_max + 1); q->att[0].uri = "")
MUT(m_dead_before_all, q->r.buyer_id = ""; q->r.idempotency_key = ""; q->r.order_id = "")

typedef struct row {
  const char *name;
  void (*mut)(req_t *);
  const char *code; /* NULL: valid */
  const char *field;
  bool dead;
} row_t;

static const row_t valid[] = {
    {"the base request", m_none, NULL, "", false},
    {"a complaint without lines or reason", m_complaint_no_lines, NULL, "", false},
    {"a complaint naming lines", m_complaint_with_lines, NULL, "", false},
    {"no locale", m_no_locale, NULL, "", false},
    {"locale with a script", m_locale_script, NULL, "", false},
    {"locale of 2", m_locale_2, NULL, "", false},
    {"locale of 35", m_locale_35, NULL, "", false},
    {"no comment", m_no_comment, NULL, "", false},
    {"comment of comment_max bytes", m_comment_max, NULL, "", false},
    {"no evidence", m_no_evidence, NULL, "", false},
    {"evidence_max attachments", m_evidence_max, NULL, "", false},
    {"lines_max lines", m_lines_max, NULL, "", false},
    {"idempotency key of 128", m_idem_128, NULL, "", false},
    {"idempotency key of punctuation", m_idem_punct, NULL, "", false},
    {"ids of 64", m_ids_64, NULL, "", false},
    {"sku of 64 bytes", m_sku_64, NULL, "", false},
    {"sku in UTF-8", m_sku_utf8, NULL, "", false},
    {"quantity INT32_MAX", m_quantity_big, NULL, "", false},
    {"preferred outcome NONE (last)", m_outcome_max, NULL, "", false},
    {"return method EXPRESS (last)", m_method_max, NULL, "", false},
    {"reason OTHER (last)", m_reason_max, NULL, "", false},
    {"case type LOGISTICS", m_type_max_non_complaint, NULL, "", false},
    {"video/quicktime", m_video, NULL, "", false},
    {"attachment of attachment_max bytes", m_size_max, NULL, "", false},
    {"attachment of 1 byte", m_size_1, NULL, "", false},
    {"shortest https URI", m_uri_9, NULL, "", false},
    {"URI of 2048 bytes", m_uri_max, NULL, "", false},
    {"URI in UTF-8", m_uri_utf8, NULL, "", false},
    {"submitted at 1 us", m_stamp_1, NULL, "", false},
};

static const row_t invalid[] = {
    {"request id empty", m_rid_empty, "contract_violation", "request_id", true},
    {"request id unsafe", m_rid_unsafe, "contract_violation", "request_id", true},
    {"request id of 65", m_rid_65, "contract_violation", "request_id", true},
    {"buyer id empty", m_bid_empty, "contract_violation", "buyer_id", true},
    {"buyer id unsafe", m_bid_unsafe, "contract_violation", "buyer_id", true},
    {"both ids empty", m_both_ids, "contract_violation", "request_id", true},
    {"idempotency key empty", m_idem_empty, "missing_field", "idempotency_key", false},
    {"idempotency key with a space", m_idem_space, "invalid_field", "idempotency_key", false},
    {"idempotency key with a tab", m_idem_tab, "invalid_field", "idempotency_key", false},
    {"idempotency key with DEL", m_idem_del, "invalid_field", "idempotency_key", false},
    {"idempotency key not ASCII", m_idem_utf8, "invalid_field", "idempotency_key", false},
    {"idempotency key of 129", m_idem_129, "invalid_field", "idempotency_key", false},
    {"order id empty", m_order_empty, "missing_field", "order_id", false},
    {"order id unsafe", m_order_unsafe, "invalid_field", "order_id", false},
    {"order id of 65", m_order_65, "invalid_field", "order_id", false},
    {"case type unspecified", m_type_zero, "missing_field", "case_type", false},
    {"case type above the enum", m_type_above, "unknown_enum", "case_type", false},
    {"case type negative", m_type_negative, "unknown_enum", "case_type", false},
    {"reason unspecified", m_reason_zero, "missing_field", "reason", false},
    {"reason above the enum", m_reason_above, "unknown_enum", "reason", false},
    {"complaint type unspecified", m_complaint_type_zero, "missing_field", "complaint_type", false},
    {"complaint type above the enum", m_complaint_type_above, "unknown_enum", "complaint_type",
     false},
    {"complaint type above the enum, not a complaint", m_complaint_type_on_return, "unknown_enum",
     "complaint_type", false},
    {"complaint with a reason above the enum", m_complaint_reason_above, "unknown_enum", "reason",
     false},
    {"preferred outcome above the enum", m_outcome_above, "unknown_enum", "preferred_outcome",
     false},
    {"return method above the enum", m_method_above, "unknown_enum", "return_method", false},
    {"submitted at 0", m_stamp_zero, "missing_field", "submitted_at_us", false},
    {"submitted before 1970", m_stamp_negative, "missing_field", "submitted_at_us", false},
    {"locale of 1", m_locale_1, "invalid_field", "locale", false},
    {"locale with an underscore", m_locale_underscore, "invalid_field", "locale", false},
    {"locale of 36", m_locale_36, "invalid_field", "locale", false},
    {"no lines, not a complaint", m_no_lines, "missing_field", "lines", false},
    {"lines_max + 1 lines", m_too_many_lines, "too_many_lines", "lines", false},
    {"line id empty", m_line_id_empty, "missing_field", "lines.line_id", false},
    {"line id unsafe", m_line_id_unsafe, "invalid_field", "lines.line_id", false},
    {"quantity 0", m_quantity_zero, "invalid_quantity", "lines.quantity", false},
    {"quantity negative", m_quantity_negative, "invalid_quantity", "lines.quantity", false},
    {"sku of 65 bytes", m_sku_65, "invalid_field", "lines.sku", false},
    {"sku not UTF-8", m_sku_bad_utf8, "invalid_field", "lines.sku", false},
    {"a line listed twice", m_duplicate_line, "duplicate_line", "lines.line_id", false},
    {"comment with an overlong", m_comment_overlong, "comment_invalid_utf8", "comment", false},
    {"comment with a surrogate", m_comment_surrogate, "comment_invalid_utf8", "comment", false},
    {"comment truncated mid-character", m_comment_truncated, "comment_invalid_utf8", "comment",
     false},
    {"comment of comment_max + 1 bytes", m_comment_too_long, "comment_too_long", "comment", false},
    {"comment too long in bytes, not characters", m_comment_multibyte_too_long, "comment_too_long",
     "comment", false},
    {"evidence_max + 1 attachments", m_too_many_atts, "too_many_attachments", "evidence", false},
    {"attachment without a URI", m_uri_empty, "missing_field", "evidence.uri", false},
    {"attachment over http", m_uri_http, "attachment_not_https", "evidence.uri", false},
    {"URI of the scheme alone", m_uri_scheme_only, "attachment_not_https", "evidence.uri", false},
    {"URI with a space", m_uri_space, "attachment_not_https", "evidence.uri", false},
    {"URI with CR LF", m_uri_newline, "attachment_not_https", "evidence.uri", false},
    {"URI with DEL", m_uri_del, "attachment_not_https", "evidence.uri", false},
    {"URI not UTF-8", m_uri_bad_utf8, "attachment_not_https", "evidence.uri", false},
    {"URI of 2049 bytes", m_uri_too_long, "attachment_not_https", "evidence.uri", false},
    {"media type gif", m_media_gif, "attachment_media_type", "evidence.media_type", false},
    {"media type empty", m_media_empty, "attachment_media_type", "evidence.media_type", false},
    {"media type with parameters", m_media_suffix, "attachment_media_type", "evidence.media_type",
     false},
    {"sha256 of 63", m_sha_63, "attachment_sha256", "evidence.sha256", false},
    {"sha256 of 65", m_sha_65, "attachment_sha256", "evidence.sha256", false},
    {"sha256 in upper case", m_sha_upper, "attachment_sha256", "evidence.sha256", false},
    {"sha256 not hex", m_sha_not_hex, "attachment_sha256", "evidence.sha256", false},
    {"attachment of 0 bytes", m_size_zero, "attachment_size", "evidence.size_bytes", false},
    {"attachment of -1 bytes", m_size_negative, "attachment_size", "evidence.size_bytes", false},
    {"attachment above attachment_max", m_size_above, "attachment_size", "evidence.size_bytes",
     false},
    {"the third attachment bad", m_third_att_bad, "attachment_size", "evidence.size_bytes", false},
};

/* Two faults: the first in validation order is the one reported. */
static const row_t first_wins[] = {
    {"order id before locale", m_order_and_locale, "missing_field", "order_id", false},
    {"key before order id", m_idem_and_order, "missing_field", "idempotency_key", false},
    {"reason before return method", m_enum_order, "unknown_enum", "reason", false},
    {"lines before comment", m_lines_before_comment, "invalid_quantity", "lines.quantity", false},
    {"UTF-8 before length", m_utf8_before_length, "comment_invalid_utf8", "comment", false},
    {"comment before evidence", m_comment_before_evidence, "comment_invalid_utf8", "comment",
     false},
    {"count before each attachment", m_too_many_before_each, "too_many_attachments", "evidence",
     false},
    {"unanswerable before anything", m_dead_before_all, "contract_violation", "buyer_id", true},
};

/* "name: code field dead" of a verdict, so a failed row names itself. */
static void describe(char *out, size_t cap, const char *name, const char *code, const char *field,
                     bool dead) {
  snprintf(out, cap, "%s: %s [%s]%s", name, code ? code : "valid", field, dead ? " dead" : "");
}

static void run_rows(const row_t *rows, size_t n) {
  static req_t q; /* large: off the stack */
  AS_CHECK(conf.lines_max < NLINES && conf.evidence_max < NATT && conf.comment_max < BIG);
  for (size_t i = 0; i < n; i++) {
    base(&q);
    rows[i].mut(&q);
    intake_verdict_t v;
    memset(&v, 0x5a, sizeof v); /* the validator must clear what it does not set */
    intake_validate_request(&x, &q.r, &v);
    char got[200], want[200];
    describe(got, sizeof got, rows[i].name, v.code, v.field, v.dead);
    describe(want, sizeof want, rows[i].name, rows[i].code, rows[i].field, rows[i].dead);
    AS_CHECK_STR_EQ(got, want);
  }
}

#define ROWS(t) (t), sizeof(t) / sizeof((t)[0])

AS_TEST(valid_requests_pass) {
  run_rows(ROWS(valid));
}

AS_TEST(each_reason_code_from_one_change) {
  run_rows(ROWS(invalid));
}

AS_TEST(the_first_fault_is_the_one_reported) {
  run_rows(ROWS(first_wins));
}

/* The validator judges and never edits: the request is as it was. */
AS_TEST(the_request_is_left_untouched) {
  static req_t q, orig;
  base(&q);
  m_duplicate_line(&q);
  memcpy(&orig, &q, sizeof q);
  intake_verdict_t v;
  intake_validate_request(&x, &q.r, &v);
  AS_CHECK_STR_EQ(v.code, "duplicate_line");
  AS_CHECK(memcmp(&orig, &q, sizeof q) == 0);
}

/* Follow-ups (intake_followup.c) validate their text under their own field
 * name ("text" of a BuyerMessage, "comment" of an EvidenceAdded) and their
 * attachments with the request's rules. */
AS_TEST(follow_up_text_and_attachments) {
  static req_t q;
  static const struct {
    const char *text, *field, *code;
  } texts[] = {
      {"", "text", NULL},
      {"还没收到退款", "text", NULL},
      {"\xe9\x80", "text", "comment_invalid_utf8"},
      {"\xc0\x80", "comment", "comment_invalid_utf8"},
  };
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
    intake_verdict_t v = {0};
    intake_validate_text(&x, texts[i].text, texts[i].field, &v);
    char got[120], want[120];
    describe(got, sizeof got, texts[i].text, v.code, v.code ? v.field : texts[i].field, false);
    describe(want, sizeof want, texts[i].text, texts[i].code, texts[i].field, false);
    AS_CHECK_STR_EQ(got, want);
  }
  intake_verdict_t v = {0};
  intake_validate_text(&x, fill(&q, 'x', (size_t)conf.comment_max + 1), "text", &v);
  AS_CHECK_STR_EQ(v.code, "comment_too_long");
  AS_CHECK_STR_EQ(v.field, "text");

  base(&q);
  memset(&v, 0, sizeof v);
  intake_validate_attachments(&x, q.r.evidence, q.r.n_evidence, &v);
  AS_CHECK(v.code == NULL);
  set_atts(&q, 0);
  intake_validate_attachments(&x, q.r.evidence, 0, &v);
  AS_CHECK(v.code == NULL);
  set_atts(&q, (size_t)conf.evidence_max + 1);
  intake_validate_attachments(&x, q.r.evidence, q.r.n_evidence, &v);
  AS_CHECK_STR_EQ(v.code, "too_many_attachments");
  AS_CHECK_STR_EQ(v.field, "evidence");
  memset(&v, 0, sizeof v);
  set_atts(&q, 2);
  q.att[1].media_type = "application/pdf";
  intake_validate_attachments(&x, q.r.evidence, q.r.n_evidence, &v);
  AS_CHECK_STR_EQ(v.code, "attachment_media_type");
  AS_CHECK_STR_EQ(v.field, "evidence.media_type");
}
