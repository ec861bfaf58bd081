/* notif_send: the notification worker's sender, outside the batch
 * transaction (issue 14 items 4 and 6).
 *
 * The batch side writes deliveries rows (001_notification.sql says what
 * each column means); the sender, started by the runtime's start hook
 * (as_worker.h), takes the due ones on a timer: in one transaction, with
 * FOR UPDATE SKIP LOCKED, rows 'pending' (or 'sending' with an expired
 * lease) whose due_at has come and whose case has no earlier case_seq
 * still pending or sending, marked 'sending' with a lease (due_at = now +
 * AS_NOTIFICATION_SEND_LEASE_MS) and one more attempt, with the buyer's
 * address read from contacts then. It commits, sends them concurrently
 * through one curl multi handle driven by the loop (keep-alive, at most
 * AS_NOTIFICATION_SEND_CONCURRENCY at once, each bounded by
 * AS_NOTIFICATION_SEND_TIMEOUT_MS, so a hanging gateway stalls nothing
 * else), and records the results in batches: one transaction updates the
 * rows and publishes NotificationSent / NotificationFailed (and SlaBreached)
 * through the outbox. A sender that dies between the gateway's answer and
 * that transaction leaves the row 'sending': it is taken again when its
 * lease expires and sent with the same idempotency key (the delivery id).
 *
 * Outcomes: 2xx (SMTP 250) sent, and the notification's standby channels
 * cancelled; a transient failure (timeout, connection, 5xx, 408, 429 with
 * its Retry-After) 'pending' again after an exponential backoff with
 * jitter, until AS_NOTIFICATION_MAX_ATTEMPTS, then 'failed' and the next
 * standby channel by rank made 'pending' (NotificationFailed.next_channel);
 * a permanent one (another 4xx, no address, channel not configured)
 * 'failed' at once, likewise. Per channel a circuit breaker
 * (notif_channel.h) opens after AS_NOTIFICATION_BREAKER_FAILURES
 * consecutive failures for AS_NOTIFICATION_BREAKER_COOLOFF_MS: the
 * deliveries it takes meanwhile fall through to their next channel
 * ("circuit_open"), or wait for the cool-off if they have none.
 *
 * SLA: a histogram of the first response (rows with submitted_at_us > 0:
 * the request's submission to the gateway's acceptance) and of event to
 * sent (source_at_us) for all; past AS_NOTIFICATION_FIRST_RESPONSE_SLA_S
 * SlaBreached (clock "first_response", or "notification" for the others)
 * once per notification (sla_breached), also for one never sent: still
 * waiting (found through a partial index, 050_sender.sql) or failed on
 * every channel.
 *
 * in_app rows are the batch side's (a row and an InAppNotice): the sender
 * takes only sms, email and push.
 *
 * Ownership: notif_send_t is embedded in the service's state (zeroed);
 * notif_send_init allocates, notif_send_fini frees (also after a failed
 * init). The configuration block is borrowed and outlives it. */
#ifndef NOTIF_SEND_H
#define NOTIF_SEND_H

#include <stdbool.h>
#include <stddef.h>

#include "as_worker.h"

typedef struct notif_send_conf {
  const char *smtp_url, *smtp_from, *sms_url, *push_url, *secret;
  long long timeout_ms, concurrency, max_attempts, retry_base_ms, retry_max_ms, lease_ms;
  long long interval_ms, breaker_failures, breaker_cooloff_ms, sla_s;
} notif_send_conf_t;

/* The configuration rows, for the service's table: NOTIF_SEND_CONFIG(type,
 * member) where member is the notif_send_conf_t inside the service's
 * configuration struct type. */
#define NOTIF_SEND_C_(t, m, f) (offsetof(t, m) + offsetof(notif_send_conf_t, f))
#define NOTIF_SEND_CONFIG(t, m)                                                                 \
  {"AS_NOTIFICATION_SMTP_URL",                                                                  \
   AS_CFG_STR,                                                                                  \
   "",                                                                                          \
   0,                                                                                           \
   512,                                                                                         \
   NOTIF_SEND_C_(t, m, smtp_url),                                                               \
   "SMTP server for e-mail (smtp://host:port or smtps://...); empty: e-mail deliveries fail "   \
   "(channel_not_configured) and fall through to the next channel."},                           \
      {"AS_NOTIFICATION_SMTP_FROM",                                                             \
       AS_CFG_STR,                                                                              \
       "aftersales@localhost",                                                                  \
       3,                                                                                       \
       254,                                                                                     \
       NOTIF_SEND_C_(t, m, smtp_from),                                                          \
       "Sender address of the e-mails (envelope and From:)."},                                  \
      {"AS_NOTIFICATION_SMS_URL",                                                               \
       AS_CFG_STR,                                                                              \
       "",                                                                                      \
       0,                                                                                       \
       512,                                                                                     \
       NOTIF_SEND_C_(t, m, sms_url),                                                            \
       "SMS gateway: JSON webhook POSTed each SMS; empty: SMS deliveries fall through."},       \
      {"AS_NOTIFICATION_PUSH_URL",                                                              \
       AS_CFG_STR,                                                                              \
       "",                                                                                      \
       0,                                                                                       \
       512,                                                                                     \
       NOTIF_SEND_C_(t, m, push_url),                                                           \
       "Push gateway: JSON webhook POSTed each push message; empty: push deliveries fall "      \
       "through."},                                                                             \
      {"AS_NOTIFICATION_WEBHOOK_SECRET",                                                        \
       AS_CFG_STR,                                                                              \
       "",                                                                                      \
       0,                                                                                       \
       256,                                                                                     \
       NOTIF_SEND_C_(t, m, secret),                                                             \
       "Shared secret of the webhooks' X-Aftersales-Signature: sha256=<hex HMAC-SHA256 of the " \
       "body> (required with a webhook URL; never logged)."},                                   \
      {"AS_NOTIFICATION_SEND_TIMEOUT_MS",                                                       \
       AS_CFG_INT,                                                                              \
       "5000",                                                                                  \
       100,                                                                                     \
       600000,                                                                                  \
       NOTIF_SEND_C_(t, m, timeout_ms),                                                         \
       "Bound on one send, connection included."},                                              \
      {"AS_NOTIFICATION_SEND_CONCURRENCY",                                                      \
       AS_CFG_INT,                                                                              \
       "64",                                                                                    \
       0,                                                                                       \
       1024,                                                                                    \
       NOTIF_SEND_C_(t, m, concurrency),                                                        \
       "Sends in flight at most, over all channels; 0: this instance only tells (writes the "   \
       "deliveries) and others send them."},                                                    \
      {"AS_NOTIFICATION_MAX_ATTEMPTS",                                                          \
       AS_CFG_INT,                                                                              \
       "5",                                                                                     \
       1,                                                                                       \
       100,                                                                                     \
       NOTIF_SEND_C_(t, m, max_attempts),                                                       \
       "Attempts of one delivery before it fails and the next channel is tried."},              \
      {"AS_NOTIFICATION_RETRY_BASE_MS",                                                         \
       AS_CFG_INT,                                                                              \
       "1000",                                                                                  \
       1,                                                                                       \
       3600000,                                                                                 \
       NOTIF_SEND_C_(t, m, retry_base_ms),                                                      \
       "Backoff after the first failed attempt; doubled each attempt, with jitter (0.5x-1x)."}, \
      {"AS_NOTIFICATION_RETRY_MAX_MS",    AS_CFG_INT,        "300000", 1, 86400000,             \
       NOTIF_SEND_C_(t, m, retry_max_ms), "Longest backoff."},                                  \
      {"AS_NOTIFICATION_SEND_LEASE_MS",                                                         \
       AS_CFG_INT,                                                                              \
       "60000",                                                                                 \
       200,                                                                                     \
       86400000,                                                                                \
       NOTIF_SEND_C_(t, m, lease_ms),                                                           \
       "A delivery taken is another sender's again after this long unless recorded (a sender "  \
       "that died mid-send); more than AS_NOTIFICATION_SEND_TIMEOUT_MS."},                      \
      {"AS_NOTIFICATION_SEND_INTERVAL_MS",                                                      \
       AS_CFG_INT,                                                                              \
       "100",                                                                                   \
       5,                                                                                       \
       60000,                                                                                   \
       NOTIF_SEND_C_(t, m, interval_ms),                                                        \
       "How often the sender looks for due deliveries when it found none; what this instance "  \
       "writes wakes it at once."},                                                             \
      {"AS_NOTIFICATION_BREAKER_FAILURES",                                                      \
       AS_CFG_INT,                                                                              \
       "5",                                                                                     \
       1,                                                                                       \
       10000,                                                                                   \
       NOTIF_SEND_C_(t, m, breaker_failures),                                                   \
       "Consecutive failures of a channel that open its circuit breaker."},                     \
      {"AS_NOTIFICATION_BREAKER_COOLOFF_MS",                                                    \
       AS_CFG_INT,                                                                              \
       "30000",                                                                                 \
       10,                                                                                      \
       3600000,                                                                                 \
       NOTIF_SEND_C_(t, m, breaker_cooloff_ms),                                                 \
       "How long an open breaker pauses its channel before one trial send."},                   \
  {                                                                                             \
    "AS_NOTIFICATION_FIRST_RESPONSE_SLA_S", AS_CFG_INT, "600", 1, 604800,                       \
        NOTIF_SEND_C_(t, m, sla_s),                                                             \
        "First response SLA (the request's submission to the acknowledgement accepted by the "  \
        "gateway) and every notification's event-to-sent bound: past it, SlaBreached."          \
  }

typedef struct notif_send notif_send_t;

/* Checks the settings (-EINVAL after logging why) and registers the
 * sender's metrics; no connection. Returns a sender (free with
 * notif_send_fini) in *out or a negative error. */
AS_MUST_CHECK int notif_send_init(as_worker_t *w, const notif_send_conf_t *conf,
                                  notif_send_t **out);

/* The start and stop hooks' work (as_service_t.start / stop). */
AS_MUST_CHECK int notif_send_start(notif_send_t *s);
void notif_send_stop(notif_send_t *s);

/* The batch side wrote deliveries: look for due ones on the loop's next
 * turn, once the batch's transaction is over, rather than an interval
 * later (AS_NOTIFICATION_SEND_INTERVAL_MS is for rows other instances
 * write and for rows whose time comes). NULL, stopped or not started: a
 * no-op. */
void notif_send_wake(notif_send_t *s);

/* Frees it; NULL is a no-op. After stop, or if start never ran. */
void notif_send_fini(notif_send_t *s);

#endif
