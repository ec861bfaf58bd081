/* intake_validate: the only place an AfterSalesRequested (and the
 * attachments and text of follow-ups) is judged byte by byte, before any
 * database lookup. A verdict is either "dead" (the message cannot be
 * answered to a buyer: no request id or buyer id; it is dead-lettered) or a
 * RequestRejected reason code naming the offending field. */
#include <stdio.h>
#include <string.h>

#include "as_utf8.h"
#include "intake.h"

#define URI_MAX 2048
#define SKU_MAX 64
#define IDEM_MAX 128
#define LOCALE_MAX 35

static bool fail(intake_verdict_t *v, const char *code, const char *field) {
  v->code = code;
  snprintf(v->field, sizeof v->field, "%s", field);
  return false;
}

/* Printable ASCII only: keys are machine-made, and any byte is still safe
 * here (parameters, hashing), but a control byte is a client bug. */
static bool idem_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0 || n > IDEM_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

static bool locale_ok(const char *s) {
  size_t n = strlen(s);
  if (n == 0) return true; /* optional: notification falls back */
  if (n < 2 || n > LOCALE_MAX) return false;
  return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static bool id_field(const char *s, const char *field, intake_verdict_t *v) {
  if (!s[0]) return fail(v, "missing_field", field);
  if (!as_envelope_id_ok(s)) return fail(v, "invalid_field", field);
  return true;
}

/* proto3 keeps unknown enum numbers as plain ints: range-check every one. */
static bool enum_field(int val, int max, bool required, const char *field, intake_verdict_t *v) {
  if (val < 0 || val > max) return fail(v, "unknown_enum", field);
  if (required && val == 0) return fail(v, "missing_field", field);
  return true;
}

static bool enums_ok(const Aftersales__V1__AfterSalesRequested *r, intake_verdict_t *v) {
  bool complaint = r->case_type == AFTERSALES__V1__CASE_TYPE__CASE_TYPE_COMPLAINT;
  return enum_field((int)r->case_type, AFTERSALES__V1__CASE_TYPE__CASE_TYPE_COMPLAINT, true,
                    "case_type", v) &&
         enum_field((int)r->reason, AFTERSALES__V1__REASON__REASON_OTHER, !complaint, "reason",
                    v) &&
         enum_field((int)r->complaint_type, AFTERSALES__V1__COMPLAINT_TYPE__COMPLAINT_TYPE_OTHER,
                    complaint, "complaint_type", v) &&
         enum_field((int)r->preferred_outcome, AFTERSALES__V1__OUTCOME__OUTCOME_NONE, false,
                    "preferred_outcome", v) &&
         enum_field((int)r->return_method, AFTERSALES__V1__RETURN_METHOD__RETURN_METHOD_EXPRESS,
                    false, "return_method", v);
}

static bool line_ok(const Aftersales__V1__LineRef *l, intake_verdict_t *v) {
  if (!id_field(l->line_id, "lines.line_id", v)) return false;
  if (l->quantity < 1) return fail(v, "invalid_quantity", "lines.quantity");
  size_t n = strlen(l->sku);
  if (n > SKU_MAX || !as_utf8_valid(l->sku, n)) return fail(v, "invalid_field", "lines.sku");
  return true;
}

static bool lines_ok(const intake_t *x, const Aftersales__V1__AfterSalesRequested *r,
                     intake_verdict_t *v) {
  if (r->n_lines == 0 && r->case_type != AFTERSALES__V1__CASE_TYPE__CASE_TYPE_COMPLAINT)
    return fail(v, "missing_field", "lines");
  if ((long long)r->n_lines > x->conf->lines_max) return fail(v, "too_many_lines", "lines");
  for (size_t i = 0; i < r->n_lines; i++) {
    if (!line_ok(r->lines[i], v)) return false;
    for (size_t j = 0; j < i; j++)
      if (strcmp(r->lines[i]->line_id, r->lines[j]->line_id) == 0)
        return fail(v, "duplicate_line", "lines.line_id");
  }
  return true;
}

void intake_validate_text(const intake_t *x, const char *s, const char *field,
                          intake_verdict_t *v) {
  size_t n = strlen(s);
  if (!as_utf8_valid(s, n))
    fail(v, "comment_invalid_utf8", field);
  else if ((long long)n > x->conf->comment_max)
    fail(v, "comment_too_long", field);
}

static bool sha256_ok(const char *s) {
  return strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64;
}

static bool media_ok(const char *s) {
  static const char *const known[] = {"image/jpeg", "image/png", "image/webp",
                                      "image/heic", "video/mp4", "video/quicktime"};
  for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
    if (strcmp(s, known[i]) == 0) return true;
  return false;
}

/* https and nothing that could smuggle a second line or a space into a
 * downstream fetch: printable, bounded, valid UTF-8. */
static bool uri_ok(const char *s) {
  size_t n = strlen(s);
  if (n <= 8 || n > URI_MAX || strncmp(s, "https://", 8) != 0) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || s[i] == 0x7f) return false;
  return as_utf8_valid(s, n);
}

static bool attachment_ok(const intake_t *x, const Aftersales__V1__Attachment *a,
                          intake_verdict_t *v) {
  if (!a->uri[0]) return fail(v, "missing_field", "evidence.uri");
  if (!uri_ok(a->uri)) return fail(v, "attachment_not_https", "evidence.uri");
  if (!media_ok(a->media_type)) return fail(v, "attachment_media_type", "evidence.media_type");
  if (!sha256_ok(a->sha256)) return fail(v, "attachment_sha256", "evidence.sha256");
  if (a->size_bytes <= 0 || a->size_bytes > x->conf->attachment_max)
    return fail(v, "attachment_size", "evidence.size_bytes");
  return true;
}

void intake_validate_attachments(const intake_t *x, Aftersales__V1__Attachment *const *a, size_t n,
                                 intake_verdict_t *v) {
  if ((long long)n > x->conf->evidence_max) {
    fail(v, "too_many_attachments", "evidence");
    return;
  }
  for (size_t i = 0; i < n; i++)
    if (!attachment_ok(x, a[i], v)) return;
}

void intake_validate_request(const intake_t *x, const Aftersales__V1__AfterSalesRequested *r,
                             intake_verdict_t *v) {
  memset(v, 0, sizeof *v);
  /* Without these two nobody can be answered: a contract violation. */
  if (!as_envelope_id_ok(r->request_id) || !as_envelope_id_ok(r->buyer_id)) {
    v->dead = true;
    fail(v, "contract_violation", as_envelope_id_ok(r->request_id) ? "buyer_id" : "request_id");
    return;
  }
  if (!r->idempotency_key[0]) {
    fail(v, "missing_field", "idempotency_key");
    return;
  }
  if (!idem_ok(r->idempotency_key)) {
    fail(v, "invalid_field", "idempotency_key");
    return;
  }
  if (!id_field(r->order_id, "order_id", v) || !enums_ok(r, v)) return;
  if (r->submitted_at_us <= 0) {
    fail(v, "missing_field", "submitted_at_us");
    return;
  }
  if (!locale_ok(r->locale)) {
    fail(v, "invalid_field", "locale");
    return;
  }
  if (!lines_ok(x, r, v)) return;
  intake_validate_text(x, r->comment, "comment", v);
  if (!v->code) intake_validate_attachments(x, r->evidence, r->n_evidence, v);
}
