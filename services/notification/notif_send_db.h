/* notif_send_db: the sender's statements (the deliveries rows it takes,
 * what it records of them, the SLA of those never sent) and the events it
 * publishes with them. Each function runs inside a transaction the caller
 * opened with as_worker_tx.
 *
 * Ownership: jobs are malloc'd by notif_send_db_claim, each with its own
 * copies of the row's strings, and freed with notif_job_free. */
#ifndef NOTIF_SEND_DB_H
#define NOTIF_SEND_DB_H

#include <stdbool.h>
#include <stdint.h>

#include "as_tx.h"
#include "notif_channel.h"

typedef enum { NOTIF_ST_SENT, NOTIF_ST_PENDING, NOTIF_ST_FAILED, NOTIF_ST_DEFER } notif_st_t;

typedef struct notif_job {
  struct notif_job *next;          /* in a claim's or the results' list */
  struct notif_job *fprev, *fnext; /* in the sender's list of sends in flight */
  notif_req_t req;
  notif_ch_t ch;
  char delivery_id[40], notification_id[40];
  char *case_id, *order_id, *buyer_id, *template_id, *template_version, *locale, *source_event_id;
  char *subject, *body, *address; /* freed as soon as the request is built */
  int attempts;                   /* counting this one */
  bool has_next;                  /* a standby channel waits behind it */
  bool trial;                     /* the breaker's trial send */
  int64_t source_at_us, submitted_at_us, started_us, done_us;
  /* The result, set when the send ends (or is refused before it starts). */
  notif_st_t st;
  long long delay_ms; /* PENDING, DEFER: from now until due again */
  char code[48];
  bool applied;       /* the record statement found the lease still ours */
  int next_channel;   /* FAILED: the Channel made pending, 0 if none */
  bool late;          /* sent past the SLA, or failed with no channel left */
  bool sla_published; /* this result published its notification's SlaBreached */
} notif_job_t;

void notif_job_free(notif_job_t *j); /* NULL is a no-op */
void notif_job_drop_text(notif_job_t *j);

/* Takes at most limit due deliveries (the rules in notif_send.h), leased
 * for lease_ms with one more attempt; prepends them to *out. Returns the
 * number taken or an as_db error (-ENOMEM). */
AS_MUST_CHECK int notif_send_db_claim(as_tx_t *tx, int limit, long long lease_ms,
                                      notif_job_t **out);

/* Records the results of the list (status, due time, error; the standby
 * rows cancelled or the next made pending) where the lease is still ours
 * (j->applied), publishes NotificationSent / NotificationFailed for those,
 * and SlaBreached once per notification sent after sla_us or failed on its
 * last channel (j->sla_published). Returns 0 or an as_db error. */
AS_MUST_CHECK int notif_send_db_record(as_tx_t *tx, notif_job_t *list, int64_t sla_us);

/* Notifications still waiting (standby, pending, sending) whose SLA
 * started before now - sla_us: marked breached and SlaBreached published,
 * at most limit; by_clock counts them (0 first response, 1 the others).
 * Returns the number or an as_db error. */
AS_MUST_CHECK int notif_send_db_sweep(as_tx_t *tx, int64_t sla_us, int limit, int by_clock[2]);

/* Deliveries due now and not taken: the queue depth gauge. */
AS_MUST_CHECK int notif_send_db_depth(as_tx_t *tx, long long *out);

#endif
