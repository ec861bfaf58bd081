/* notif_channel: one send on one channel as a libcurl easy handle, how its
 * answer is judged, and each channel's circuit breaker.
 *
 * SMS and push are JSON webhooks (POST, Content-Type application/json)
 * carrying Idempotency-Key: <delivery id> and X-Aftersales-Signature:
 * sha256=<hex HMAC-SHA256 of the body with the shared secret>; e-mail is
 * an SMTP transaction whose message is HTML (UTF-8, base64) with
 * Message-ID <delivery id@aftersales.invalid>, so a gateway or a mail
 * store can drop a repeat. The buyer's address goes into the request and
 * nowhere else (never a log field, an error code or a metric label).
 *
 * Ownership: notif_req_t is the caller's (embed it, zeroed); prepare fills
 * it with an easy handle and buffers it owns, release frees them (also
 * after a failed prepare; twice is harmless). The message's strings are
 * copied. */
#ifndef NOTIF_CHANNEL_H
#define NOTIF_CHANNEL_H

#include <curl/curl.h>
#include <stdbool.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_err.h"
#include "notif_send.h"

typedef enum { NOTIF_CH_SMS, NOTIF_CH_EMAIL, NOTIF_CH_PUSH, NOTIF_CH__COUNT } notif_ch_t;

/* "sms", "email", "push"; parse returns -1 for any other name. */
const char *notif_ch_name(notif_ch_t ch);
int notif_ch_parse(const char *name);
/* The aftersales.v1.Channel number of a deliveries.channel name (0 if none). */
int notif_ch_proto(const char *name);

/* What one send is about (borrowed strings). */
typedef struct notif_msg {
  const char *delivery_id, *notification_id, *case_id, *template_id, *locale;
  const char *subject, *body, *address;
} notif_msg_t;

typedef struct notif_req {
  CURL *easy;
  struct curl_slist *headers, *rcpt;
  as_buf_t payload;      /* the JSON body or the e-mail message */
  size_t sent;           /* e-mail: bytes read by libcurl so far */
  long long retry_after; /* seconds from a Retry-After header, -1 if none */
  char errbuf[CURL_ERROR_SIZE];
} notif_req_t;

/* Builds the request for msg on ch. Returns 0; -ENOENT (code set to
 * "channel_not_configured" or "no_address") or -EINVAL ("bad_address": a
 * character an address may not carry) when there is nothing to send;
 * -ENOMEM. code has room for 48 bytes. */
AS_MUST_CHECK int notif_channel_prepare(notif_req_t *r, notif_ch_t ch, const notif_send_conf_t *c,
                                        const notif_msg_t *msg, char code[48]);
void notif_channel_release(notif_req_t *r);

typedef enum { NOTIF_SENT, NOTIF_RETRY, NOTIF_PERMANENT } notif_outcome_t;

/* Judges a finished transfer: sent (HTTP 2xx, SMTP accepted), retry
 * (timeout, connection, HTTP 408/429/5xx, SMTP 4xx) or permanent (other
 * 4xx, SMTP 5xx), with a machine-readable code ("http_500", "timeout",
 * "smtp_550", ...). */
notif_outcome_t notif_channel_outcome(notif_req_t *r, notif_ch_t ch, CURLcode rc, char code[48]);

/* A channel's circuit breaker: closed (sends go), open (paused until
 * open_until_ms), then one trial send whose result closes or re-opens it. */
typedef struct notif_breaker {
  long long failures;     /* consecutive */
  uint64_t open_until_ms; /* 0: closed */
  bool trial;             /* the trial send is in flight */
} notif_breaker_t;

/* May a send on this channel start now? Past the cool-off, lets one trial
 * through (and says no to the others until it ends). */
bool notif_breaker_allows(notif_breaker_t *b, uint64_t now_ms);
/* Records a send's end; returns true if this opened the breaker. A
 * permanent failure (the message's fault, not the provider's) is not
 * counted; pass ok for it. */
bool notif_breaker_record(notif_breaker_t *b, bool ok, long long threshold, long long cooloff_ms,
                          uint64_t now_ms);
bool notif_breaker_open(const notif_breaker_t *b);

#endif
