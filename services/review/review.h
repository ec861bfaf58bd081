/* review: the service's private declarations, shared by its modules.
 *
 * main.c is its tables (configuration, metrics, payload routes, deadline
 * kinds); the modules: review_state (the state's policy, loaded at start and
 * on SIGHUP), review_opened (a batch's new cases), review_policy (the policy
 * file and the pure decision), review_record (cases as review knows them: written
 * from CaseOpened, read back for later events), review_apply (a decision
 * becomes state moves, deadlines and events), review_money (refunds,
 * exchanges and coupons under the ledger's cap), review_events (evidence,
 * buyer replies, agent decisions, disputes, rulings, returns and
 * inspections), review_timers (evidence, return, offer and SLA
 * deadlines), review_proactive (the offer made to a flawed lot's
 * buyers) and review_logistics (the logistics worker's DeliveryOutcome,
 * the redelivery deadline, the units a receipt counted); review_out is what they all share (SQL in
 * the worker's schema, envelopes on a topic).
 *
 * Ownership: review_t is the runtime's state block (allocated, its metrics
 * set and freed by the runtime); the policy is owned by review_t (released
 * by review_fini) and replaced whole on reload. Everything a batch
 * allocates is released before the handler returns. */
#ifndef REVIEW_H
#define REVIEW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_case.h"
#include "as_cols.h"
#include "as_err.h"
#include "as_worker.h"
#include "review_policy.h"

/* Why a CaseOpened was refused by the integrity check (metric label). */
typedef enum {
  REVIEW_WHY_OK,
  REVIEW_WHY_UNKNOWN_CASE,
  REVIEW_WHY_INTAKE,
  REVIEW_WHY_LEDGER,
  REVIEW_WHY_N
} review_why_t;

typedef struct review_conf {
  const char *policy_file;
} review_conf_t;

typedef struct review {
  const as_log_t *log;
  const review_conf_t *conf;
  review_policy_t *policy; /* owned; swapped on SIGHUP */
  as_histogram_t *decision_seconds;
  as_counter_t *decided[6]; /* per Verdict, [0] unused */
  as_counter_t *refunds, *refund_minor_capped, *exchanges, *coupons;
  as_counter_t *reloads_ok, *reloads_refused, *sla_breaches;
  as_counter_t *integrity_refused[REVIEW_WHY_N]; /* per review_why_t */
  as_counter_t *inspections_requested, *compensations, *compensations_repeated;
  as_counter_t *logistics_applied, *logistics_stale; /* DeliveryOutcome carried out / ignored */
  as_counter_t *logistics_no_case;                   /* DeliveryOutcome of no case: nothing to do */
} review_t;

/* A case as review knows it: the decision inputs plus what events need. */
typedef struct review_rec {
  const char *case_id, *case_number, *order_id, *buyer_id, *locale, *payment_ref;
  int payment_method;
  int64_t shipping_fee_minor, review_due_us;
  /* what intake recorded as paid: OrderPaid.amount_paid, and the share of
   * it allocated to the shipping fee (the lines' shares are in lines) */
  int64_t paid_minor, shipping_paid_minor;
  const char *undecidable; /* from CaseOpened: the rule sending it to a person, or NULL */
  review_case_t c;         /* c.lines points at lines */
  review_line_t *lines;    /* owned (review_rec_free) */
  as_case_state_t state;   /* in cases.cases, when read back */
  /* the decision in force (read back) */
  int verdict, outcome, shipping_payer, offer_kind;
  bool return_required, refund_shipping, ruling_final, received, inspection_known,
      inspection_passed;
  bool logistics;       /* CaseOpened.route "logistics": recorded, never decided by review */
  bool receipt_counted; /* the ReturnReceived named its lines (received_lines) */
  int shipping_refund;  /* REVIEW_SHIP_* decided with the approval */
  int64_t approved_minor, offer_minor;
  char offer_id[40];
  PGresult *owner; /* the rows the strings point into, or NULL */
} review_rec_t;

void review_rec_free(review_rec_t *r); /* the lines and owner; not r itself */

/* ---- review_state.c: the runtime's init, fini and reload */
AS_MUST_CHECK int review_init(as_worker_t *w, const void *conf, void *state);
void review_fini(void *state);
AS_MUST_CHECK int review_reload(void *state);

/* ---- review_opened.c */
/* The route of CaseOpened: the batch's cases routed to review, checked
 * against intake's record and decided together. */
AS_MUST_CHECK int review_opened_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n);

/* ---- review_record.c */
/* Fills rec from a CaseOpened (strings borrowed from the message) whose
 * case, order and buyer ids are safe. Returns NULL when the case can be
 * decided, else the rule (static) that sends it to a person
 * ("order.unpaid", "currency.mismatch", "price.invalid", "paid.missing",
 * "paid.inconsistent", "lines.invalid", "amount.overflow"); rec is then a
 * safe stub (no lines, nothing claimed) and rec->undecidable says why.
 * *overflow is set when figures overflow 64 bits: a contract violation. */
const char *review_record_from_event(review_rec_t *rec, const Aftersales__V1__CaseOpened *e,
                                     bool *overflow);
/* Makes rec the safe stub of a case a person must decide, for why
 * (static); returns why. */
const char *review_record_undecidable(review_rec_t *rec, const char *why);
/* The integrity check: each of ev[0..n) against the shared case tables
 * (the case exists with that order and buyer; the paid figures are the
 * ones intake recorded) and against the ledger's paid figures for the
 * order. why[i] is REVIEW_WHY_OK or why the event is refused. Returns 0 or
 * an as_db error. */
AS_MUST_CHECK int review_record_verify(as_tx_t *tx, const Aftersales__V1__CaseOpened *const *ev,
                                       size_t n, review_why_t *why);
/* Writes recs[0..n) into review's tables (cases, lines, ledger rows) with
 * bulk statements; fresh[i] is false for a case already recorded. Returns 0
 * or an as_db error. */
AS_MUST_CHECK int review_record_insert(as_tx_t *tx, review_rec_t *recs, size_t n, bool *fresh);
/* Reads one case back, its review row locked FOR UPDATE, with its state.
 * Returns 0, -ENOENT (not a case review knows) or an as_db error. */
AS_MUST_CHECK int review_record_load(as_tx_t *tx, const char *case_id, review_rec_t *rec);

/* ---- review_apply.c */
typedef struct review_item {
  const as_msg_t *cause; /* the event being handled; NULL from a timer */
  review_rec_t *rec;
  review_decision_t d;
  uint32_t from_mask; /* states the case may be in for this decision */
  as_case_actor_t actor;
  const char *why;    /* timeline reason; NULL: d.rule */
  as_case_state_t to; /* ReviewDecided.case_state; 0: the decision's own target */
  int64_t decided_at_us;
  bool skip; /* out: the case was not where the decision expected */
} review_item_t;

/* Applies decisions: state moves, the decision row, deadlines, the review
 * SLA clock, ReviewDecided and its companions (ReturnInstructions,
 * GoodwillOffered), and the money decided at once (refund-only approvals).
 * Returns 0 or an as_db error. */
AS_MUST_CHECK int review_apply(review_t *x, as_tx_t *tx, review_item_t *items, size_t n);

/* Publishes the ReviewDecided of one item (review_apply does it for its
 * items; timers closing a case use it alone). */
AS_MUST_CHECK int review_publish_decided(review_t *x, as_tx_t *tx, const review_item_t *it);

/* Moves one case (a single move, with detail) and reports -EPERM/-ENOENT
 * as rc; returns 0 or an as_db error. */
AS_MUST_CHECK int review_move(as_tx_t *tx, const char *case_id, as_case_state_t to,
                              uint32_t from_mask, as_case_actor_t actor, const char *why,
                              const as_msg_t *cause, const char *detail, int *rc);

/* Tells the buyer and the other workers a move that is not a new policy
 * decision (a dispute, a return received, a failed inspection, a ruling, a
 * case closed with nothing left to refund): a ReviewDecided with verdict,
 * rule and the state the case is now in. */
AS_MUST_CHECK int review_publish_outcome(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                         const review_rec_t *rec, int verdict, const char *rule,
                                         as_case_state_t to, as_case_actor_t actor);

/* Follow-up deadlines while a case waits on someone outside review (a
 * parcel in transit, the inspection, a mediator, a supervisor): each
 * announces the wait with SlaBreached and re-arms itself (review_timers). */
#define REVIEW_FOLLOW_UP_US (24LL * 3600 * 1000000)

/* The goodwill offer's id: derived from the case (one offer per case). */
void review_offer_id(char out[40], const char *case_id);

/* ---- review_money.c */
/* ITEMS: each claimed line in full; GOODWILL: an amount booked as goodwill;
 * PARTIAL: an amount below the claim (an agent's or a mediator's), booked
 * as items. The last two are spread over the lines in proportion.
 * REMAINDER: everything left of each line under the ledger, all its
 * unrefunded units (a compensation: the line's full allocation minus what
 * it had back). */
typedef enum {
  REVIEW_PAY_ITEMS,
  REVIEW_PAY_GOODWILL,
  REVIEW_PAY_PARTIAL,
  REVIEW_PAY_REMAINDER
} review_pay_kind_t;
typedef struct review_pay {
  const as_msg_t *cause;
  const review_rec_t *rec;
  review_pay_kind_t kind;
  int64_t amount_minor; /* goodwill / ruling amount; items: the approved amount */
  bool with_shipping;
  const char *reason_code; /* static */
  /* NULL: the case's own refund (id from the case, one per case); else
   * the compensation it pays (id from "<case_id>|<compensation_id>", one
   * per compensation) */
  const char *compensation_id;
  int64_t paid; /* out: refunded total, 0 if nothing */
} review_pay_t;
/* The bulk form: refunds p[0..n) with a handful of statements; refunds of
 * one batch on the same order line draw on the same ledger figure in
 * order. Returns 0 or an as_db error. */
AS_MUST_CHECK int review_money_refund_many(review_t *x, as_tx_t *tx, review_pay_t *p, size_t n);

/* Refunds the case: the items (with the shipping fee when the decision
 * says so), a goodwill amount, or a partial amount, cut to what is left
 * of each line under the ledger. *paid is the total refunded (0: nothing
 * was left, or the case already had its refund). Publishes RefundIssued.
 * Returns 0 or an as_db error. */
AS_MUST_CHECK int review_money_refund(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                      const review_rec_t *rec, review_pay_kind_t kind,
                                      int64_t amount_minor, bool with_shipping,
                                      const char *reason_code, int64_t *paid);
/* Publishes ExchangeRequested (once per case); *done false if it existed. */
AS_MUST_CHECK int review_money_exchange(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                        const review_rec_t *rec, bool *done);
/* The same with ExchangeRequested.reason_code (static; NULL: none), e.g.
 * "reship.lost_parcel" for a parcel the carrier lost. */
AS_MUST_CHECK int review_money_exchange_for(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                            const review_rec_t *rec, const char *reason_code,
                                            bool *done);
/* Issues a coupon (once per case) and publishes CouponIssued. */
AS_MUST_CHECK int review_money_coupon(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                      const review_rec_t *rec, int64_t value_minor, bool *done);
/* The same for a compensation's coupon: once per compensation_id (its id
 * from "<case_id>|<compensation_id>"); compensation_id NULL is the case's. */
AS_MUST_CHECK int review_money_coupon_for(review_t *x, as_tx_t *tx, const as_msg_t *cause,
                                          const review_rec_t *rec, int64_t value_minor,
                                          const char *compensation_id, bool *done);
/* The name a refund's or coupon's id is derived from: the case id, or
 * "<case_id>|<compensation_id>". Returns its length, or 0 if it does not
 * fit in cap bytes. */
size_t review_money_id_name(char *out, size_t cap, const char *case_id,
                            const char *compensation_id);

/* ---- review_events.c: the routes after CaseOpened, one per payload type
 * (EvidenceAdded, BuyerReplied, AgentDecision, DisputeOpened,
 * MediationRuling, ReturnShipped, ReturnReceived) */
AS_MUST_CHECK int review_on_evidence(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_reply(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_agent(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_dispute(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_ruling(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_shipped(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_received(void *state, as_tx_t *tx, as_msg_t *m);

/* ---- review_inspection.c: QC of the evidence, the inspection's finding
 * (InspectionCompleted) and a supplier alert's compensation
 * (CompensationGranted) */
AS_MUST_CHECK int review_on_inspected(void *state, as_tx_t *tx, as_msg_t *m);
AS_MUST_CHECK int review_on_compensation(void *state, as_tx_t *tx, as_msg_t *m);
/* Publishes the evidence-only InspectionRequested of a decision sent to QC
 * (it->d.inspect). */
AS_MUST_CHECK int review_inspection_request(review_t *x, as_tx_t *tx, const review_item_t *it);
/* Settles a case in INSPECTING whose finding is recorded: refunds (or
 * exchanges) the units inspection counted, or rejects, the move naming the
 * inspector. */
AS_MUST_CHECK int review_inspection_settle(review_t *x, as_tx_t *tx, const as_msg_t *m,
                                           review_rec_t *rec);
/* ---- review_events.c: loading the case an event names */
typedef int (*review_handler_fn)(review_t *x, as_tx_t *tx, as_msg_t *m, review_rec_t *rec);
/* Loads the case an event names and hands it to fn. Events about cases
 * review does not hold are someone else's, unless must_exist: then the
 * event contradicts the case and is refused (contract_violation). */
AS_MUST_CHECK int review_with_case(void *state, as_tx_t *tx, as_msg_t *m, const char *case_id,
                                   bool must_exist, review_handler_fn fn);

/* ---- review_timers.c: the deadline kinds "evidence", "return", "offer"
 * (the case closes), "sla:review" (escalation), and the follow-ups
 * "mediation", "sla:escalated" with their '+' twins; "inspection",
 * "return:transit" and their twins (retired) do nothing */
AS_MUST_CHECK int review_timers_evidence(void *state, as_tx_t *tx, const char *case_id,
                                         const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_return_due(void *state, as_tx_t *tx, const char *case_id,
                                           const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_offer(void *state, as_tx_t *tx, const char *case_id,
                                      const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_sla(void *state, as_tx_t *tx, const char *case_id, const char *kind,
                                    int64_t due_us);
AS_MUST_CHECK int review_timers_transit(void *state, as_tx_t *tx, const char *case_id,
                                        const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_inspection(void *state, as_tx_t *tx, const char *case_id,
                                           const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_mediation(void *state, as_tx_t *tx, const char *case_id,
                                          const char *kind, int64_t due_us);
AS_MUST_CHECK int review_timers_escalated(void *state, as_tx_t *tx, const char *case_id,
                                          const char *kind, int64_t due_us);
/* Arms the deadline kind ("mediation", "sla:escalated", "redelivery")
 * wait_us from now; cancels it and its twin. Return 0 or an as_db
 * error. */
AS_MUST_CHECK int review_timers_arm(as_tx_t *tx, const char *case_id, const char *kind,
                                    int64_t wait_us);
AS_MUST_CHECK int review_timers_cancel(as_tx_t *tx, const char *case_id, const char *kind);
/* How long review waits on others before the follow-ups start. (The
 * inspection's clock is the inspection worker's, a return parcel's transit
 * the logistics worker's: "inspection" rows armed before issue 12 and
 * "return:transit" rows armed before issue 13 fire and do nothing.) */
#define REVIEW_MEDIATION_WAIT_US (7LL * 24 * 3600 * 1000000)

/* ---- review_logistics.c: the logistics worker's outcomes (issue 13) */
/* The route of DeliveryOutcome: the remedy carried out once, from the
 * state the outcome expects (stale ones counted and ignored, hostile ones
 * dead-lettered). */
AS_MUST_CHECK int review_on_outcome(void *state, as_tx_t *tx, as_msg_t *m);
/* The deadline kind "redelivery": a RESOLVED case closes. */
AS_MUST_CHECK int review_timers_redelivery(void *state, as_tx_t *tx, const char *case_id,
                                           const char *kind, int64_t due_us);
/* Keeps the units a ReturnReceived counted (rr->lines; none kept and
 * nothing capped when it names no lines and is not partial). Returns NULL,
 * or why the receipt contradicts the case (static; nothing written);
 * *rc is 0 or an as_db error. */
const char *review_logistics_received(as_tx_t *tx, const review_rec_t *rec,
                                      const Aftersales__V1__ReturnReceived *rr, int *rc);
/* Cuts counted (a copy of rec whose lines the caller owns) to the units
 * the receipt counted, dropping lines that did not come back; nothing when
 * rec->receipt_counted is false. Returns 0 or an as_db error. */
AS_MUST_CHECK int review_logistics_cap(as_tx_t *tx, const review_rec_t *rec, review_rec_t *counted);

/* ---- review_inspection.c: lines an event names */
/* NULL if every ref is a distinct line of the case with units in
 * [min_units, max units of the line] (claimed units when claimed, else
 * purchased); else why not (static). */
const char *review_check_refs(const review_rec_t *rec, Aftersales__V1__LineRef *const *refs,
                              size_t n, int32_t min_units, bool claimed);

/* ---- review_proactive.c: proactive cases (a flawed lot's buyers) */
/* True for a CaseOpened intake opened unasked (origin PROACTIVE): decided
 * by review_proactive_decide (review_policy.h), not as a claim. */
bool review_proactive_is(const Aftersales__V1__CaseOpened *e);
/* The buyer accepted an exchange offer (m, a BuyerReplied, checked by the
 * caller): ExchangeRequested once, GOODWILL_OFFERED -> APPROVED ->
 * EXCHANGED, and a ReviewDecided. Returns 0 or an as_db error. */
AS_MUST_CHECK int review_proactive_exchange(review_t *x, as_tx_t *tx, const as_msg_t *m,
                                            review_rec_t *rec);

/* ---- helpers */
/* A Money value; cur is borrowed. */
static inline Aftersales__V1__Money review_money(int64_t minor, const char *cur) {
  Aftersales__V1__Money m = AFTERSALES__V1__MONEY__INIT;
  m.amount_minor = minor;
  m.currency = (char *)cur;
  return m;
}
#define REVIEW_STATE_BIT(s) (1u << AFTERSALES__V1__CASE_STATE__CASE_STATE_##s)
/* Publishes env (payload already set) on topic keyed by the case id. */
AS_MUST_CHECK int review_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic,
                                 const char *case_id, const char *order_id,
                                 Aftersales__V1__Envelope *env);

#endif
