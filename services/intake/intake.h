/* intake: the service's private declarations, shared by its modules.
 *
 * Intake is the fleet's front door. main.c is its tables (configuration,
 * metrics, payload routes, deadline kinds); the modules:
 * intake_projection (order events -> order projection),
 * intake_validate (what a request must look like, byte by byte),
 * intake_requests (the per-batch pipeline: idempotency, hold, order checks),
 * intake_cases (opening cases and the first response), intake_history (the
 * buyer's history a CaseOpened carries), intake_hold (held
 * requests), intake_followup (evidence and buyer messages on a case),
 * intake_reject (RequestRejected), intake_refused (the answer to a request
 * the runtime refused before any route saw it), intake_config (the state's set-up and
 * the complaint routing map), intake_money (the allocation of
 * the amount paid), intake_idem (content hashes, one answer per request id,
 * repeats of a key), intake_clock (the deadlines of the cases intake
 * opens: complaint resolution, pickup, escalation follow-up) and
 * intake_outreach (proactive cases for the buyers of a flawed lot).
 *
 * Ownership: intake_t is the runtime's state block (allocated, its metrics
 * set and freed by the runtime; intake_init fills the rest and holds
 * nothing to release); everything a batch allocates is released before
 * the handler returns. */
#ifndef INTAKE_H
#define INTAKE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_case.h"
#include "as_cols.h"
#include "as_err.h"
#include "as_worker.h"

#define INTAKE_NCOMPLAINT 6 /* ComplaintType values 0..5 */

/* AS_INTAKE_* variables (main.c's table). */
typedef struct intake_conf {
  long long hold_ms, comment_max, evidence_max, attachment_max, complaint_hours;
  long long review_hours, first_response_min, lines_max, clock_skew_s, stamp_lag_s;
  long long outreach_max; /* proactive cases per SupplierQualityAlert */
  const char *complaint_routes;
} intake_conf_t;

typedef struct intake {
  as_worker_t *w; /* for series made on demand (rejections by reason) */
  const as_log_t *log;
  const intake_conf_t *conf;
  char dept[INTAKE_NCOMPLAINT][48]; /* department per ComplaintType */
  long long dept_hours[INTAKE_NCOMPLAINT];
  as_histogram_t *ack_submitted, *ack_occurred;
  as_counter_t *opened, *held, *duplicates, *repeated, *breaches;
  /* intake_outreach: cases opened, lines over the bound, alerts ignored */
  as_counter_t *outreach_opened, *outreach_over, *outreach_ignored[2];
} intake_t;
enum { INTAKE_OUTREACH_NO_LOT, INTAKE_OUTREACH_REPLAYED }; /* outreach_ignored[] */

/* ---- intake_config.c */
/* The runtime's init: the log, the configuration and the complaint routes.
 * Returns 0 or -EINVAL (logged). */
AS_MUST_CHECK int intake_init(as_worker_t *w, const void *conf, void *state);
/* Parses "SERVICE_ATTITUDE=customer_care[:hours],..." into x->dept; every
 * complaint type must be mapped. Returns 0 or -EINVAL with err filled. */
AS_MUST_CHECK int intake_config_routes(intake_t *x, const char *spec, char *err, size_t errlen);

/* ---- intake_validate.c: a verdict on one payload, without the database */
typedef struct intake_verdict {
  const char *code; /* NULL: valid; else a RequestRejected reason code */
  bool dead;        /* not answerable to a buyer: dead-letter instead */
  char field[48];   /* which field, for the human message / DLQ detail */
} intake_verdict_t;

void intake_validate_request(const intake_t *x, const Aftersales__V1__AfterSalesRequested *r,
                             intake_verdict_t *v);
void intake_validate_attachments(const intake_t *x, Aftersales__V1__Attachment *const *a, size_t n,
                                 intake_verdict_t *v);
void intake_validate_text(const intake_t *x, const char *s, const char *field, intake_verdict_t *v);

/* ---- intake_reject.c */
/* Publishes RequestRejected (message_en / message_zh from the reason code)
 * on the cases topic keyed by the order id (or the request id). */
AS_MUST_CHECK int intake_reject_publish(intake_t *x, as_tx_t *tx, const as_msg_t *cause,
                                        const char *request_id, const char *order_id,
                                        const char *buyer_id, const char *idem_key,
                                        const char *code, const char *field);

/* ---- intake_refused.c */
/* The runtime's refused hook: a RequestRejected for a request dead-lettered
 * before intake's routes saw it, when its identifying fields are clean. */
AS_MUST_CHECK int intake_on_refused(void *state, as_tx_t *tx, const as_msg_t *m);

/* ---- intake_projection.c */
/* The route of the order events: applies msgs (OrderPlaced, OrderPaid,
 * OrderShipped, OrderDelivered, OrderCancelled) to the projection (bulk,
 * latest wins per column group), then releases the held requests of the
 * orders that got their OrderPlaced or OrderPaid (intake_hold). Returns 0
 * or an as_db error. */
AS_MUST_CHECK int intake_orders_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

/* ---- intake_requests.c: the request pipeline */

/* What a batch read of its orders (locked) and their lines, shared by the
 * pipeline's steps. Columns of orders, by index: */
enum {
  INTAKE_O_ID,
  INTAKE_O_BUYER,
  INTAKE_O_MERCHANT,
  INTAKE_O_CANCELLED,
  INTAKE_O_PLACED,
  INTAKE_O_DELIVERED,
  INTAKE_O_PAID,
  INTAKE_O_PAID_CUR,
  INTAKE_O_PAY_METHOD,
  INTAKE_O_PAY_REF,
  INTAKE_O_REGION,
  INTAKE_O_SHIP_FEE,
  INTAKE_O_SHIP_CUR,
};
/* Columns of lines (claimed: units claimed by cases not rejected): */
enum {
  INTAKE_L_ORDER,
  INTAKE_L_LINE,
  INTAKE_L_SKU,
  INTAKE_L_UNIT,
  INTAKE_L_CUR,
  INTAKE_L_QUANTITY,
  INTAKE_L_CLAIMED,
  INTAKE_L_CATEGORY,
  INTAKE_L_SUPPLIER,
  INTAKE_L_DISCOUNT,
  INTAKE_L_LOT, /* '' when upstream did not say */
};
typedef struct intake_view {
  PGresult *orders; /* INTAKE_O_* columns, sorted by order id */
  PGresult *lines;  /* INTAKE_L_* columns, sorted by order id, line id */
} intake_view_t;

/* A buyer's history as a CaseOpened reports it (BuyerHistory). */
typedef struct intake_history {
  int64_t first_order_at_us;
  int32_t orders, cases, claims_on_order;
} intake_history_t;

typedef struct intake_req intake_req_t;
struct intake_req {
  const as_msg_t *cause; /* the message (live) or a synthetic one (held) */
  as_msg_t *live;        /* the batch's message, NULL for held requests */
  const Aftersales__V1__AfterSalesRequested *r;
  const uint8_t *bytes; /* envelope bytes, kept if the request is held */
  size_t nbytes;
  bool final;         /* may not be held (again) */
  int64_t arrived_us; /* when the platform received it (intake_requests.c) */
  /* outcome: SKIP gets no answer (dead-lettered, or its request id was
   * answered before); ACK is answered with the key's existing case; FOLLOW
   * waits for an earlier request of the same key in the batch (prev). */
  enum {
    INTAKE_R_PENDING,
    INTAKE_R_SKIP,
    INTAKE_R_REJECT,
    INTAKE_R_HOLD,
    INTAKE_R_OPEN,
    INTAKE_R_ACK,
    INTAKE_R_FOLLOW
  } fate;
  intake_verdict_t v;
  intake_req_t *prev; /* the previous request of the same key in the batch */
  char hash[37];      /* content hash (intake_idem_hash) */
  char case_hash[37]; /* the content hash of the key's case, once known */
  char case_id[37];
  char case_number[32];
  const char *merchant_id; /* borrowed from the batch's order rows */
  int order_row;           /* the order's row in the batch's orders view */
  as_case_state_t state;
  int64_t claimed_minor;
  char currency[4];
  char route[64];
  int64_t review_due_us, resolution_due_us, first_due_us;
  int64_t pickup_due_us; /* review and logistics routes: intake escalates a case still OPEN then */
  int *line_rows;        /* per request line: row in the batch's line table */
  int64_t *line_paid;    /* per request line: the whole line's share of the amount paid */
  int64_t shipping_paid, paid_minor; /* the shipping fee's share; OrderPaid.amount_paid */
  bool paid;                         /* the three figures above are set */
  const char *paid_currency;         /* with paid: borrowed from the batch's order rows */
  int64_t vouched_us;                /* the submission time windows are judged on */
  intake_history_t history;
};

/* Decides and applies reqs[0..n): rejections, holds, cases. Returns 0 or an
 * as_db error. */
AS_MUST_CHECK int intake_requests_run(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n);
/* The route of AfterSalesRequested: the batch's requests, after its order
 * events (the routes' batch handlers run in table order). */
AS_MUST_CHECK int intake_requests_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

/* ---- intake_cases.c */
/* Opens the cases of reqs with fate OPEN: as_case_open_many (numbers, the
 * first timeline rows), lines, clocks, evidence, comment, the request
 * record, the buyer's history, CaseOpened and BuyerAcknowledged. A case
 * another instance opened first is skipped. */
AS_MUST_CHECK int intake_cases_open(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n,
                                    const intake_view_t *view);

/* ---- intake_history.c */
/* Fills reqs[i].history of the requests with fate OPEN, once their cases
 * are inserted (the counts are read in the same transaction). One
 * statement. Returns 0, -ENOMEM or an as_db error. */
AS_MUST_CHECK int intake_history_fill(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n);

/* ---- intake_hold.c */
AS_MUST_CHECK int intake_hold_store(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n);
/* The order ids whose held requests may go on (append with
 * as_cols_str(ready, INTAKE_READY_ORDER, id)), for intake_hold_release. */
enum { INTAKE_READY_ORDER };
extern const as_bulk_t intake_hold_take;
/* Replays the held requests of the orders in ready that are now placed and
 * paid. */
AS_MUST_CHECK int intake_hold_release(intake_t *x, as_tx_t *tx, as_cols_t *ready);
/* The deadline "hold:<request id>" (keyed by the order id) fired. */
AS_MUST_CHECK int intake_hold_expire(void *state, as_tx_t *tx, const char *order_id,
                                     const char *kind, int64_t due_us);
/* Runs held envelopes (rows of r: request_id, order_id, envelope in hex,
 * arrival in Unix us) through the pipeline; final = no further hold. */
AS_MUST_CHECK int intake_hold_replay(intake_t *x, as_tx_t *tx, PGresult *r, bool final);

/* ---- intake_money.c */
/* Allocates the order's amount paid (row o of orders) over all its lines
 * (weight unit x quantity - discount, lines in line-id byte order) and the
 * shipping fee (last), and keeps the shares of q's lines (q->line_rows must
 * be filled) in q->line_paid, q->shipping_paid and q->paid_minor (q->paid).
 * *why: NULL, or the RequestRejected reason code that refuses the payment
 * (order_not_paid, currency_mismatch, amount_overflow, payment_unallocatable).
 * Returns 0 or -ENOMEM. */
AS_MUST_CHECK int intake_money_allocate(intake_req_t *q, PGresult *orders, int o, PGresult *lines,
                                        const char **why);
/* The same rule for any n lines of the order in row o: the shares of the
 * lines at rows[0..n) of lines into line_paid[0..n), the fee's into
 * *shipping_paid, or *why (as above). Returns 0 or -ENOMEM. */
AS_MUST_CHECK int intake_money_shares(PGresult *orders, int o, PGresult *lines, const int *rows,
                                      size_t n, int64_t *line_paid, int64_t *shipping_paid,
                                      const char **why);

/* ---- intake_idem.c: one answer per request id, one case per key */
/* The content hash of r: a UUIDv5 of the packed request without request_id
 * and submitted_at_us, into out[37]. Returns 0 or -ENOMEM. */
AS_MUST_CHECK int intake_idem_hash(const Aftersales__V1__AfterSalesRequested *r, char out[37]);
/* One lookup once the order rows are locked: marks SKIP the live requests
 * (PENDING, FOLLOW or REJECT) whose (buyer, request id) was answered
 * before, is held, or repeats an earlier one of the batch; and resolves the
 * PENDING and FOLLOW ones whose key has a case or a held request: ACK (same
 * content) or REJECT (idempotency_key_reused / idempotency_key_in_progress).
 * Returns 0 or an as_db error. */
AS_MUST_CHECK int intake_idem_lookup(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n);
/* Links the batch's requests of one key (prev) and marks the later ones
 * FOLLOW. Returns 0 or -ENOMEM. */
AS_MUST_CHECK int intake_idem_group(intake_req_t *reqs, size_t n);
/* The same for the PENDING requests whose case another instance opened
 * first (as_case_open_many left it alone). Returns 0 or an as_db error. */
AS_MUST_CHECK int intake_idem_existing(intake_t *x, as_tx_t *tx, intake_req_t *reqs, size_t n);
/* A FOLLOW request whose key's earlier request in the batch is decided:
 * true with q resolved, false if q must be decided on its own. */
bool intake_idem_follow(intake_req_t *q);
/* Resolves the FOLLOW requests left after the cases were opened. */
void intake_idem_settle(intake_req_t *reqs, size_t n);
/* Publishes BuyerAcknowledged for the ACK requests and records the answers
 * of the ACK and REJECT ones (intake_cases_open records the OPEN ones).
 * Returns 0 or an as_db error. */
AS_MUST_CHECK int intake_idem_answer(as_tx_t *tx, intake_req_t *reqs, size_t n);

/* ---- intake_cases.c */
/* BuyerAcknowledged for q (case q->case_id / q->case_number), naming its
 * request id. Returns 0 or -ENOMEM / -EINVAL. */
AS_MUST_CHECK int intake_cases_ack(as_tx_t *tx, const intake_req_t *q);

/* ---- intake_clock.c */
/* Arms the deadline that moves each case of reqs with fate OPEN on:
 * complaints "resolution", review and logistics cases "pickup". */
AS_MUST_CHECK int intake_clock_arm(intake_t *x, as_tx_t *tx, const intake_req_t *reqs, size_t n);
/* A case deadline fired: "resolution", "pickup", "escalation_followup:<n>".
 * Returns 0 or an as_db error. */
AS_MUST_CHECK int intake_clock_resolution(void *state, as_tx_t *tx, const char *case_id,
                                          const char *kind, int64_t due_us);
AS_MUST_CHECK int intake_clock_pickup(void *state, as_tx_t *tx, const char *case_id,
                                      const char *kind, int64_t due_us);
AS_MUST_CHECK int intake_clock_followup(void *state, as_tx_t *tx, const char *case_id,
                                        const char *kind, int64_t due_us);

/* ---- intake_followup.c */
/* The route of EvidenceAdded and BuyerMessage, one message at a time. */
AS_MUST_CHECK int intake_followup_apply(void *state, as_tx_t *tx, as_msg_t *m);

/* ---- intake_outreach.c */
/* The route of SupplierQualityAlert: one proactive case per order line of
 * the alert's (supplier, sku, lot) whose buyer has not complained, at most
 * AS_INTAKE_OUTREACH_MAX, once per alert. Returns 0 or an as_db error. */
AS_MUST_CHECK int intake_outreach_apply(void *state, as_tx_t *tx, as_msg_t *m);

#endif
