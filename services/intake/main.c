/* as-intake: the fleet's front door.
 *
 * Consumes order events (into the order projection) and after-sales
 * requests, evidence and buyer messages; validates each request, holds the
 * ones whose order is not known yet, opens a case in the shared case tables
 * for each valid one (exactly once per buyer and idempotency key), routes
 * it, and publishes CaseOpened, the buyer's first acknowledgement, or a
 * RequestRejected with a machine-readable reason. One batch is one
 * transaction: projection first, then the held requests the batch's orders
 * release, then the batch's requests, then follow-ups. */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_topics.h"
#include "intake.h"

extern const as_migration_t as_sql_intake[];

static intake_conf_t conf;

#define C(f) offsetof(intake_conf_t, f)
static const as_cfg_param_t config[] = {
    {"AS_INTAKE_HOLD_MS", AS_CFG_INT, "60000", 100, 86400000, C(hold_ms),
     "How long a request for an order not seen or not paid yet is held before it is rejected (unknown_order, order_not_paid)."},
    {"AS_INTAKE_COMMENT_MAX_BYTES", AS_CFG_INT, "2000", 1, 65536, C(comment_max),
     "Longest comment or message, in UTF-8 bytes."},
    {"AS_INTAKE_EVIDENCE_MAX", AS_CFG_INT, "9", 0, 100, C(evidence_max), "Most attachments per request or follow-up."},
    {"AS_INTAKE_ATTACHMENT_MAX_BYTES", AS_CFG_INT, "524288000", 1, 10737418240LL, C(attachment_max),
     "Largest declared attachment size."},
    {"AS_INTAKE_LINES_MAX", AS_CFG_INT, "100", 1, 1000, C(lines_max), "Most order lines per request."},
    {"AS_INTAKE_COMPLAINT_ROUTES", AS_CFG_STR,
     "SERVICE_ATTITUDE=customer_care,CASE_HANDLING=quality_assurance,DELIVERY=logistics_ops,"
     "PRODUCT_LISTING=merchant_ops,OTHER=customer_care",
     0, 1024, C(complaint_routes),
     "Complaint type -> department[:hours], comma separated; every type must be mapped."},
    {"AS_INTAKE_COMPLAINT_HOURS", AS_CFG_INT, "72", 1, 8760, C(complaint_hours),
     "Default complaint resolution deadline, in hours."},
    {"AS_INTAKE_REVIEW_HOURS", AS_CFG_INT, "24", 1, 8760, C(review_hours), "Review SLA clock, in hours."},
    {"AS_INTAKE_FIRST_RESPONSE_MIN", AS_CFG_INT, "10", 1, 1440, C(first_response_min),
     "First-response SLA clock from submission, in minutes."},
    {"AS_INTAKE_CLOCK_SKEW_S", AS_CFG_INT, "300", 0, 86400, C(clock_skew_s),
     "A submitted_at_us further ahead of intake's clock than this is rejected as submitted_in_future."},
    {"AS_INTAKE_STAMP_MAX_LAG_S", AS_CFG_INT, "600", 0, 86400, C(stamp_lag_s),
     "Windows are judged on submitted_at_us only if it lies within this before the request's arrival; else on the arrival."},
};

static const double ack_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                                    0.5,   1,      2.5,   5,    10,    30,   60,  600};

static int init(as_worker_t *w, void **state) {
  intake_t *x = calloc(1, sizeof *x);
  if (!x) return -ENOMEM;
  x->w = w;
  x->log = as_worker_log(w);
  x->conf = &conf;
  x->schema = as_worker_schema(w);
  char err[200];
  if (intake_config_routes(x, conf.complaint_routes, err, sizeof err) < 0) {
    AS_ERROR(x->log, "bad configuration", AS_F_STR("detail", err));
    free(x);
    return -EINVAL;
  }
  as_metrics_t *m = as_worker_metrics(w);
  const char *help = "Seconds from submission (from=submitted) or from the request event (from=occurred) to the buyer's acknowledgement.";
  x->ack_submitted = as_metrics_histogram(m, "as_intake_ack_seconds", help, "from=\"submitted\"", ack_bounds, 16);
  x->ack_occurred = as_metrics_histogram(m, "as_intake_ack_seconds", help, "from=\"occurred\"", ack_bounds, 16);
  x->opened = as_metrics_counter(m, "as_intake_cases_opened_total", "Cases opened.", NULL);
  x->held = as_metrics_counter(m, "as_intake_requests_held_total", "Requests held for an order not seen yet.", NULL);
  x->duplicates = as_metrics_counter(m, "as_intake_requests_duplicate_total",
                                     "Requests whose (buyer, idempotency key) already has a case.", NULL);
  x->repeated = as_metrics_counter(m, "as_intake_requests_repeated_total",
                                   "Requests whose request id was already answered (no second answer).", NULL);
  x->breaches = as_metrics_counter(m, "as_intake_sla_breaches_total",
                                   "Cases intake escalated (resolution, pickup) or reminded (escalation follow-up).", NULL);
  if (!x->ack_submitted || !x->ack_occurred || !x->opened || !x->held || !x->duplicates || !x->repeated ||
      !x->breaches) {
    free(x);
    return -ENOMEM;
  }
  *state = x;
  return 0;
}

static void fini(void *state) { free(state); }

static bool is_request(const as_msg_t *m) {
  return m->state == AS_MSG_NEW &&
         m->env->payload_case == AFTERSALES__V1__ENVELOPE__PAYLOAD_AFTERSALES_REQUESTED;
}

/* When the request reached the platform: the broker's clock if the topic
 * stamps LogAppendTime, else intake's own (a CreateTime is the producer's
 * word, i.e. the storefront's, no better than submitted_at_us). */
static int64_t arrival_of(const rd_kafka_message_t *rkm, int64_t now) {
  rd_kafka_timestamp_type_t type;
  int64_t ms = rd_kafka_message_timestamp(rkm, &type);
  return type == RD_KAFKA_TIMESTAMP_LOG_APPEND_TIME && ms > 0 ? ms * 1000 : now;
}

/* The batch's requests, after the projection and the held ones. */
static int run_requests(intake_t *x, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  intake_req_t *reqs = calloc(n ? n : 1, sizeof *reqs);
  if (!reqs) return -ENOMEM;
  size_t k = 0;
  int64_t now = as_now_us();
  for (size_t i = 0; i < n; i++)
    if (is_request(msgs[i]))
      reqs[k++] = (intake_req_t){.cause = msgs[i], .live = msgs[i],
                                 .r = msgs[i]->env->aftersales_requested,
                                 .bytes = msgs[i]->rkm->payload, .nbytes = msgs[i]->rkm->len,
                                 .arrived_us = arrival_of(msgs[i]->rkm, now)};
  int rc = intake_requests_run(x, tx, reqs, k);
  free(reqs);
  return rc;
}

static int handle(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  intake_t *x = state;
  as_cols_t ready;
  as_cols_init(&ready, 1);
  int rc = intake_projection_apply(x, tx, msgs, n, &ready);
  if (rc == 0) rc = intake_hold_release(x, tx, &ready);
  as_cols_free(&ready);
  if (rc == 0) rc = run_requests(x, tx, msgs, n);
  for (size_t i = 0; rc == 0 && i < n; i++)
    if (msgs[i]->state == AS_MSG_NEW) rc = intake_followup_apply(x, tx, msgs[i]);
  return rc;
}

/* hold:<request id> deadlines are keyed by order id; the cases' clocks
 * (intake_clock) by case id. */
static int on_deadline(void *state, as_tx_t *tx, const char *case_id, const char *kind, int64_t due_us) {
  if (strncmp(kind, "hold:", 5) == 0) return intake_hold_expire(state, tx, case_id, kind + 5);
  int rc = intake_clock_fire(state, tx, case_id, kind, due_us);
  return rc > 0 ? 0 : rc;
}

static const char *const topics[] = {AS_TOPIC_NAME_ORDERS, AS_TOPIC_NAME_REQUESTS};
static const Aftersales__V1__Envelope__PayloadCase accepts[] = {
    AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_PLACED,       AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_PAID,
    AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_SHIPPED,      AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_DELIVERED,
    AFTERSALES__V1__ENVELOPE__PAYLOAD_ORDER_CANCELLED,    AFTERSALES__V1__ENVELOPE__PAYLOAD_AFTERSALES_REQUESTED,
    AFTERSALES__V1__ENVELOPE__PAYLOAD_EVIDENCE_ADDED,     AFTERSALES__V1__ENVELOPE__PAYLOAD_BUYER_MESSAGE,
};

static const as_service_t intake_service = {
    .name = "intake",
    .summary = "as-intake: validates after-sales requests against the order projection and opens cases",
    .topics = topics,
    .ntopics = 2,
    .accepts = accepts,
    .naccepts = sizeof accepts / sizeof accepts[0],
    .migrations = as_sql_intake,
    .config = config,
    .nconfig = sizeof config / sizeof config[0],
    .config_out = &conf,
    .init = init,
    .fini = fini,
    .handle = handle,
    .on_deadline = on_deadline,
};

int main(int argc, char **argv) { return as_worker_main(&intake_service, argc, argv); }
