/* notif_channel: the requests of the three channels (webhook JSON with its
 * signature, SMTP with an HTML message), their judgement, the breakers.
 * notif_channel.h says what goes on the wire. */
#include "notif_channel.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "as_sha256.h"

static const char *const names[NOTIF_CH__COUNT] = {"sms", "email", "push"};

const char *notif_ch_name(notif_ch_t ch) {
  return ch < NOTIF_CH__COUNT ? names[ch] : "unknown";
}

int notif_ch_parse(const char *name) {
  for (int i = 0; i < NOTIF_CH__COUNT; i++)
    if (strcmp(name, names[i]) == 0) return i;
  return -1;
}

/* proto/notification.proto's Channel numbers. */
int notif_ch_proto(const char *name) {
  static const char *const proto[] = {"", "sms", "email", "push", "in_app"};
  for (int i = 1; i < 5; i++)
    if (name && strcmp(name, proto[i]) == 0) return i;
  return 0;
}

/* A JSON string (quoted): the body is UTF-8 already (the batch side
 * renders it), so only quotes, backslashes and control bytes need escapes. */
static void json_str(as_buf_t *b, const char *s) {
  as_buf_puts(b, "\"");
  for (const char *p = s ? s : ""; *p; p++) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\')
      as_buf_printf(b, "\\%c", c);
    else if (c < 0x20)
      as_buf_printf(b, "\\u%04x", c);
    else
      as_buf_append(b, p, 1);
  }
  as_buf_puts(b, "\"");
}

static void json_field(as_buf_t *b, const char *key, const char *val, bool first) {
  if (!first) as_buf_puts(b, ",");
  json_str(b, key);
  as_buf_puts(b, ":");
  json_str(b, val);
}

static void webhook_body(as_buf_t *b, notif_ch_t ch, const notif_msg_t *m) {
  as_buf_puts(b, "{");
  json_field(b, "delivery_id", m->delivery_id, true);
  json_field(b, "notification_id", m->notification_id, false);
  json_field(b, "channel", notif_ch_name(ch), false);
  json_field(b, "to", m->address, false);
  json_field(b, "case_id", m->case_id, false);
  json_field(b, "template_id", m->template_id, false);
  json_field(b, "locale", m->locale, false);
  if (ch == NOTIF_CH_PUSH) json_field(b, "title", m->subject, false);
  json_field(b, "body", m->body, false);
  as_buf_puts(b, "}");
}

/* Retry-After in seconds (an HTTP date is not honoured: the backoff
 * applies). Header lines are not NUL-terminated. */
static size_t on_header(char *p, size_t size, size_t n, void *arg) {
  notif_req_t *r = arg;
  size_t len = size * n;
  static const char key[] = "retry-after:";
  if (len > sizeof key - 1 && len < 64 && strncasecmp(p, key, sizeof key - 1) == 0) {
    char v[64];
    memcpy(v, p + sizeof key - 1, len - (sizeof key - 1));
    v[len - (sizeof key - 1)] = '\0';
    char *end;
    long long s = strtoll(v, &end, 10);
    while (*end == ' ' || *end == '\r' || *end == '\n') end++;
    if (end != v && *end == '\0' && s >= 0) r->retry_after = s;
  }
  return len;
}

static size_t discard(char *p, size_t size, size_t n, void *arg) {
  (void)p, (void)arg;
  return size * n;
}

static int sign(notif_req_t *r, const char *secret, const char *delivery_id) {
  uint8_t mac[AS_SHA256_LEN];
  as_sha256_hmac(secret, strlen(secret), as_buf_str(&r->payload), r->payload.len, mac);
  char h[128];
  snprintf(h, sizeof h, "Idempotency-Key: %s", delivery_id);
  struct curl_slist *l = curl_slist_append(NULL, "Content-Type: application/json");
  if (l) r->headers = l;
  l = l ? curl_slist_append(l, h) : NULL;
  as_buf_t sig;
  as_buf_init(&sig);
  as_buf_puts(&sig, "X-Aftersales-Signature: sha256=");
  as_buf_hex(&sig, mac, sizeof mac);
  l = l && as_buf_ok(&sig) ? curl_slist_append(l, as_buf_str(&sig)) : NULL;
  l = l ? curl_slist_append(l, "Expect:") : NULL; /* no 100-continue round trip */
  as_buf_free(&sig);
  return l ? 0 : -ENOMEM;
}

static int webhook(notif_req_t *r, notif_ch_t ch, const notif_send_conf_t *c,
                   const notif_msg_t *m) {
  webhook_body(&r->payload, ch, m);
  if (!as_buf_ok(&r->payload) || sign(r, c->secret, m->delivery_id) < 0) return -ENOMEM;
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, ch == NOTIF_CH_SMS ? c->sms_url : c->push_url);
  curl_easy_setopt(e, CURLOPT_POST, 1L);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, as_buf_str(&r->payload));
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)r->payload.len);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, r->headers);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, r);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, discard);
  return 0;
}

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of s in lines of at most 76 characters (RFC 2045), each ended by
 * CRLF unless inline (an encoded word). */
static void base64(as_buf_t *b, const char *s, bool lines) {
  size_t n = strlen(s), col = 0;
  const unsigned char *p = (const unsigned char *)s;
  for (size_t i = 0; i < n; i += 3) {
    unsigned v = (unsigned)p[i] << 16 | (i + 1 < n ? (unsigned)p[i + 1] << 8 : 0) |
                 (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {b64[v >> 18 & 63], b64[v >> 12 & 63], i + 1 < n ? b64[v >> 6 & 63] : '=',
                 i + 2 < n ? b64[v & 63] : '='};
    as_buf_append(b, q, 4);
    if (lines && (col += 4) >= 76) as_buf_puts(b, "\r\n"), col = 0;
  }
  if (lines && col) as_buf_puts(b, "\r\n");
}

/* The message: headers, then the HTML body in base64 (so no line of it
 * can be taken for the end of the data or be too long). The subject is an
 * RFC 2047 encoded word: UTF-8, and no header can be smuggled through it. */
static void mail_message(as_buf_t *b, const notif_send_conf_t *c, const notif_msg_t *m) {
  char date[64];
  time_t now = time(NULL);
  struct tm tm;
  gmtime_r(&now, &tm);
  strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S +0000", &tm);
  as_buf_printf(b, "From: <%s>\r\nTo: <%s>\r\nDate: %s\r\n", c->smtp_from, m->address, date);
  as_buf_printf(b, "Message-ID: <%s@aftersales.invalid>\r\n", m->delivery_id);
  as_buf_printf(b, "X-Aftersales-Notification: %s\r\nSubject: =?UTF-8?B?", m->notification_id);
  base64(b, m->subject, false);
  as_buf_puts(b, "?=\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n");
  as_buf_puts(b, "Content-Transfer-Encoding: base64\r\n\r\n");
  base64(b, m->body, true);
}

static size_t mail_read(char *p, size_t size, size_t n, void *arg) {
  notif_req_t *r = arg;
  size_t left = r->payload.len - r->sent, k = size * n < left ? size * n : left;
  memcpy(p, as_buf_str(&r->payload) + r->sent, k);
  r->sent += k;
  return k;
}

static int mail(notif_req_t *r, const notif_send_conf_t *c, const notif_msg_t *m) {
  char rcpt[300];
  snprintf(rcpt, sizeof rcpt, "<%s>", m->address);
  char from[300];
  snprintf(from, sizeof from, "<%s>", c->smtp_from);
  mail_message(&r->payload, c, m);
  r->rcpt = curl_slist_append(NULL, rcpt);
  if (!as_buf_ok(&r->payload) || !r->rcpt) return -ENOMEM;
  CURL *e = r->easy;
  curl_easy_setopt(e, CURLOPT_URL, c->smtp_url);
  curl_easy_setopt(e, CURLOPT_MAIL_FROM, from);
  curl_easy_setopt(e, CURLOPT_MAIL_RCPT, r->rcpt);
  curl_easy_setopt(e, CURLOPT_UPLOAD, 1L);
  curl_easy_setopt(e, CURLOPT_READFUNCTION, mail_read);
  curl_easy_setopt(e, CURLOPT_READDATA, r);
  curl_easy_setopt(e, CURLOPT_INFILESIZE_LARGE, (curl_off_t)r->payload.len);
  return 0;
}

/* An address goes into a header line or a JSON string: refuse what could
 * end the line or the angle brackets around it. */
static bool address_ok(const char *a, size_t max) {
  size_t n = strlen(a);
  if (n == 0 || n > max) return false;
  for (const unsigned char *p = (const unsigned char *)a; *p; p++)
    if (*p < 0x21 || *p == '<' || *p == '>' || *p == 0x7f) return false;
  return true;
}

int notif_channel_prepare(notif_req_t *r, notif_ch_t ch, const notif_send_conf_t *c,
                          const notif_msg_t *m, char code[48]) {
  const char *url = ch == NOTIF_CH_SMS    ? c->sms_url
                    : ch == NOTIF_CH_PUSH ? c->push_url
                                          : c->smtp_url;
  as_buf_init(&r->payload);
  r->retry_after = -1;
  if (!url || !*url) return snprintf(code, 48, "channel_not_configured"), -ENOENT;
  if (!m->address || !*m->address) return snprintf(code, 48, "no_address"), -ENOENT;
  if (!address_ok(m->address, ch == NOTIF_CH_PUSH ? 4096 : 254))
    return snprintf(code, 48, "bad_address"), -EINVAL;
  r->easy = curl_easy_init();
  if (!r->easy) return snprintf(code, 48, "out_of_memory"), -ENOMEM;
  curl_easy_setopt(r->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(r->easy, CURLOPT_TIMEOUT_MS, (long)c->timeout_ms);
  curl_easy_setopt(r->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)c->timeout_ms);
  curl_easy_setopt(r->easy, CURLOPT_ERRORBUFFER, r->errbuf);
  curl_easy_setopt(r->easy, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(r->easy, CURLOPT_PROTOCOLS_STR,
                   ch == NOTIF_CH_EMAIL ? "smtp,smtps" : "http,https");
  int rc = ch == NOTIF_CH_EMAIL ? mail(r, c, m) : webhook(r, ch, c, m);
  if (rc < 0) snprintf(code, 48, "out_of_memory");
  return rc;
}

void notif_channel_release(notif_req_t *r) {
  if (r->easy) curl_easy_cleanup(r->easy);
  curl_slist_free_all(r->headers);
  curl_slist_free_all(r->rcpt);
  as_buf_free(&r->payload);
  r->easy = NULL;
  r->headers = r->rcpt = NULL;
}

static notif_outcome_t transport(CURLcode rc, char code[48]) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      snprintf(code, 48, "timeout");
      break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
      snprintf(code, 48, "connect_failed");
      break;
    default:
      snprintf(code, 48, "transport_%d", (int)rc);
      break;
  }
  return NOTIF_RETRY;
}

notif_outcome_t notif_channel_outcome(notif_req_t *r, notif_ch_t ch, CURLcode rc, char code[48]) {
  long status = 0;
  curl_easy_getinfo(r->easy, CURLINFO_RESPONSE_CODE, &status);
  if (ch == NOTIF_CH_EMAIL) {
    /* libcurl fails the transfer on a refusing reply and keeps its code. */
    if (rc == CURLE_OK) return snprintf(code, 48, "ok"), NOTIF_SENT;
    if (status >= 400 && status < 600) {
      snprintf(code, 48, "smtp_%ld", status);
      return status >= 500 ? NOTIF_PERMANENT : NOTIF_RETRY;
    }
    return transport(rc, code);
  }
  if (rc != CURLE_OK) return transport(rc, code);
  snprintf(code, 48, "http_%ld", status);
  if (status >= 200 && status < 300) return NOTIF_SENT;
  if (status == 408 || status == 429 || status >= 500) return NOTIF_RETRY;
  return NOTIF_PERMANENT;
}

bool notif_breaker_allows(notif_breaker_t *b, uint64_t now_ms) {
  if (b->open_until_ms == 0) return true;
  if (now_ms < b->open_until_ms || b->trial) return false;
  b->trial = true;
  return true;
}

bool notif_breaker_record(notif_breaker_t *b, bool ok, long long threshold, long long cooloff_ms,
                          uint64_t now_ms) {
  if (b->open_until_ms && !b->trial) return false; /* sent before it opened: changes nothing */
  bool was_trial = b->trial;
  b->trial = false;
  if (ok) {
    b->failures = 0;
    b->open_until_ms = 0;
    return false;
  }
  if (!was_trial && ++b->failures < threshold) return false;
  b->open_until_ms = now_ms + (uint64_t)cooloff_ms;
  return true;
}

bool notif_breaker_open(const notif_breaker_t *b) {
  return b->open_until_ms != 0;
}
