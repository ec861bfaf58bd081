/* notif_events: each buyer-visible event mapped to its template and the
 * parameters it fills (README "What the buyer is told"). One handler per
 * payload; each checks what it needs of the event (a hostile one is
 * dead-lettered with the reason before anything is written) and hands one
 * notif_tell_t to notif_tell. Words the buyer reads instead of codes
 * (who pays the shipping, an inspection's result, a carrier's finding) are
 * small tables here, in en and zh; a review's reason code and the note for
 * packaging without a zh-CN text are the templates' [words]. */
#include <stdio.h>
#include <string.h>

#include "as_money.h"
#include "notification.h"

#define E(m, f) ((m)->env->f)
typedef struct words {
  const char *en, *zh;
} words_t;

/* The event's case id must be the envelope's: a notice about another case
 * would tell one buyer about someone else's. */
static bool case_ok(as_msg_t *m, const char *case_id) {
  if (!as_envelope_id_ok(case_id) || strcmp(case_id, m->env->case_id) != 0) {
    as_tx_reject(m, "case_id missing, unsafe or not the envelope's");
    return false;
  }
  return true;
}

static bool money_ok(as_msg_t *m, const Aftersales__V1__Money *v, bool required) {
  if (!v && !required) return true;
  if (!v || v->amount_minor < 0 || !as_money_currency_ok(v->currency)) {
    as_tx_reject(m, "amount missing, negative or not in an ISO 4217 currency");
    return false;
  }
  return true;
}

static bool text_ok(as_msg_t *m, const char *s, const char *what) {
  if (notif_text_ok(s, NOTIF_ADDR_MAX)) return true;
  char d[120];
  snprintf(d, sizeof d, "%s longer than %d bytes or with control characters", what, NOTIF_ADDR_MAX);
  as_tx_reject(m, d);
  return false;
}

/* The templates' word key in locale (the [words] table), else fallback. */
static const char *word_or(const notif_t *x, const char *key, const char *locale,
                           const char *fallback) {
  const char *w = notif_templates_word(x->templates, key, locale);
  return w ? w : fallback;
}

int notif_on_acknowledged(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__BuyerAcknowledged *e = E(m, buyer_acknowledged);
  if (!case_ok(m, e->case_id)) return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "case.acknowledged");
  t.locale = e->locale;
  t.buyer_id = e->buyer_id;
  t.submitted_at_us = e->submitted_at_us; /* the first response's clock (nsend's SLA) */
  t.first = true;                         /* never held for order: the SLA's */
  if (e->submitted_at_us) t.date_us = e->submitted_at_us;
  return notif_tell(state, tx, m, &t);
}

int notif_on_rejected(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__RequestRejected *e = E(m, request_rejected);
  if (!as_envelope_id_ok(e->buyer_id)) return as_tx_reject(m, "buyer_id missing or unsafe"), 0;
  if (!text_ok(m, e->message_en, "message_en") || !text_ok(m, e->message_zh, "message_zh") ||
      !text_ok(m, e->reason_code, "reason_code"))
    return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "request.rejected");
  t.buyer_id = e->buyer_id;
  const char *en = e->message_en[0] ? e->message_en : e->reason_code;
  notif_tell_words(&t, "reason", en, e->message_zh[0] ? e->message_zh : en);
  return notif_tell(state, tx, m, &t);
}

int notif_on_decided(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__ReviewDecided *e = E(m, review_decided);
  if (!case_ok(m, e->case_id) || !money_ok(m, e->approved_amount, false) ||
      !text_ok(m, e->reason_code, "reason_code"))
    return 0;
  static const char *const by_verdict[] = {
      [AFTERSALES__V1__VERDICT__VERDICT_APPROVED] = "review.approved",
      [AFTERSALES__V1__VERDICT__VERDICT_REJECTED] = "review.rejected",
      [AFTERSALES__V1__VERDICT__VERDICT_AWAITING_EVIDENCE] = "review.evidence",
      [AFTERSALES__V1__VERDICT__VERDICT_MANUAL_REVIEW] = "review.manual",
  };
  /* a goodwill verdict is told by its GoodwillOffered, which has the offer */
  unsigned v = (unsigned)e->verdict;
  if (v >= sizeof by_verdict / sizeof *by_verdict || !by_verdict[v]) return 0;
  char amount[48];
  notif_tell_t t;
  /* an approval that pays nothing (an exchange, a ruling) says no amount */
  bool paid = e->approved_amount && e->approved_amount->amount_minor > 0;
  notif_tell_init(&t, m,
                  v == AFTERSALES__V1__VERDICT__VERDICT_APPROVED && !paid
                      ? "review.approved.no_amount"
                      : by_verdict[v]);
  notif_tell_param(&t, "amount", notif_money(amount, sizeof amount, e->approved_amount));
  char key[NOTIF_ADDR_MAX + 8];
  snprintf(key, sizeof key, "reason.%s", e->reason_code);
  notif_tell_words(&t, "reason", word_or(state, key, "en", e->reason_code),
                   word_or(state, key, "zh-CN", e->reason_code));
  t.due_us = e->evidence_due_us;
  return notif_tell(state, tx, m, &t);
}

static const words_t payer_words[] = {
    [AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_UNSPECIFIED] = {"", ""},
    [AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_BUYER] = {"You pay the return shipping",
                                                        "退货运费由您承担"},
    [AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_SELLER] = {"The seller pays the return shipping",
                                                         "退货运费由商家承担"},
    [AFTERSALES__V1__PAYER_PARTY__PAYER_PARTY_PLATFORM] = {"We pay the return shipping",
                                                           "退货运费由平台承担"},
};

/* ReturnInstructions: the instructions on every channel, the packaging and
 * address again by SMS, and the reminder before the ship-by date. */
int notif_on_instructions(void *state, as_tx_t *tx, as_msg_t *m) {
  notif_t *x = state;
  const Aftersales__V1__ReturnInstructions *e = E(m, return_instructions);
  if (!case_ok(m, e->case_id) || !text_ok(m, e->return_address, "return_address") ||
      !text_ok(m, e->packaging, "packaging") || !text_ok(m, e->packaging_zh, "packaging_zh"))
    return 0;
  unsigned p = (unsigned)e->shipping_payer;
  if (p >= sizeof payer_words / sizeof *payer_words)
    return as_tx_reject(m, "shipping_payer unknown"), 0;
  char ship[24];
  snprintf(ship, sizeof ship, "%lld", (long long)e->ship_by_us);
  const char *const v[] = {e->case_id, e->return_address, e->packaging, ship};
  PGresult *r = NULL;
  int rc = as_db_query(as_tx_db(tx),
                       "UPDATE cases SET return_address = $2, packaging = $3, ship_by_us = $4,"
                       " return_shipped = false WHERE case_id = $1",
                       4, v, &r);
  PQclear(r);
  if (rc < 0) return rc;
  notif_tell_t t;
  notif_tell_init(&t, m, "return.instructions");
  t.locale = e->locale;
  t.due_us = e->ship_by_us;
  notif_tell_param(&t, "return_address", e->return_address);
  /* the zh-CN text if the event has one, else the words saying where it is */
  const char *zh = e->packaging_zh[0] || !e->packaging[0]
                       ? e->packaging_zh
                       : word_or(x, "packaging.untranslated", "zh-CN", "");
  notif_tell_words(&t, "packaging", e->packaging[0] ? e->packaging : e->packaging_zh, zh);
  notif_tell_words(&t, "payer", payer_words[p].en, payer_words[p].zh);
  if ((rc = notif_tell(x, tx, m, &t)) < 0) return rc;
  t.template_id = "return.packaging";
  t.only = "sms";
  if ((rc = notif_tell(x, tx, m, &t)) < 0) return rc;
  return notif_reminder_arm(x, tx, e->case_id, e->ship_by_us);
}

int notif_on_goodwill(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__GoodwillOffered *e = E(m, goodwill_offered);
  if (!case_ok(m, e->case_id) || !money_ok(m, e->amount, false)) return 0;
  char amount[48];
  notif_tell_t t;
  notif_tell_init(&t, m, "goodwill.offered");
  notif_tell_param(&t, "amount", notif_money(amount, sizeof amount, e->amount));
  t.due_us = e->expires_at_us;
  return notif_tell(state, tx, m, &t);
}

/* The money is back: told even in quiet hours. */
int notif_on_refund(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__RefundIssued *e = E(m, refund_issued);
  if (!case_ok(m, e->case_id) || !money_ok(m, e->total, true)) return 0;
  char amount[48];
  notif_tell_t t;
  notif_tell_init(&t, m, "refund.issued");
  t.buyer_id = e->buyer_id;
  t.urgent = true;
  if (e->issued_at_us) t.date_us = e->issued_at_us;
  notif_tell_param(&t, "amount", notif_money(amount, sizeof amount, e->total));
  return notif_tell(state, tx, m, &t);
}

int notif_on_exchange(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__ExchangeRequested *e = E(m, exchange_requested);
  if (!case_ok(m, e->case_id)) return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "exchange.requested");
  return notif_tell(state, tx, m, &t);
}

int notif_on_coupon(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__CouponIssued *e = E(m, coupon_issued);
  if (!case_ok(m, e->case_id) || !money_ok(m, e->value, true)) return 0;
  char amount[48];
  notif_tell_t t;
  notif_tell_init(&t, m, "coupon.issued");
  t.buyer_id = e->buyer_id;
  t.due_us = e->expires_at_us;
  notif_tell_param(&t, "amount", notif_money(amount, sizeof amount, e->value));
  return notif_tell(state, tx, m, &t);
}

int notif_on_inspected(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__InspectionCompleted *e = E(m, inspection_completed);
  if (!case_ok(m, e->case_id)) return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "inspection.completed");
  if (e->defect_confirmed)
    notif_tell_words(&t, "result", "the defect is confirmed", "确认存在质量问题");
  else
    notif_tell_words(&t, "result", "no defect was found", "未发现质量问题");
  return notif_tell(state, tx, m, &t);
}

int notif_on_compensation(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__CompensationGranted *e = E(m, compensation_granted);
  if (!case_ok(m, e->case_id) || !money_ok(m, e->amount, true) || !money_ok(m, e->coupon, false))
    return 0;
  char amount[48], coupon[48];
  notif_tell_t t;
  notif_tell_init(&t, m, "compensation.granted");
  t.buyer_id = e->buyer_id;
  notif_tell_param(&t, "amount", notif_money(amount, sizeof amount, e->amount));
  notif_tell_param(&t, "coupon", notif_money(coupon, sizeof coupon, e->coupon));
  return notif_tell(state, tx, m, &t);
}

static const words_t finding_words[] = {
    [AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_UNSPECIFIED] = {"the carrier answered",
                                                                        "承运商已答复"},
    [AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_DELIVERED_CONFIRMED] =
        {"the carrier confirms it was delivered", "承运商确认已妥投"},
    [AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_REDELIVERY] = {"it will be delivered again",
                                                                       "将重新派送"},
    [AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_LOST] = {"the carrier lost it",
                                                                 "包裹已丢失"},
    [AFTERSALES__V1__DELIVERY_FINDING__DELIVERY_FINDING_IN_TRANSIT] = {"it is still on its way",
                                                                       "包裹仍在运输途中"},
};

/* An outcome without a case (the carrier's answer to a stalled parcel
 * nobody had complained about) names the order and its buyer: told by its
 * parcel, with what the buyer can do now. */
int notif_on_outcome(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__DeliveryOutcome *e = E(m, delivery_outcome);
  bool caseless = !e->case_id[0];
  if (!caseless && !case_ok(m, e->case_id)) return 0;
  if (caseless && !as_envelope_id_ok(e->buyer_id))
    return as_tx_reject(m, "neither a case nor a buyer"), 0;
  unsigned f = (unsigned)e->finding;
  if (f >= sizeof finding_words / sizeof *finding_words)
    return as_tx_reject(m, "finding unknown"), 0;
  if (caseless &&
      (!text_ok(m, e->carrier, "carrier") || !text_ok(m, e->tracking_number, "tracking_number")))
    return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, caseless ? "delivery.outcome.order" : "delivery.outcome");
  if (caseless) {
    t.buyer_id = e->buyer_id;
    notif_tell_param(&t, "carrier", e->carrier);
    notif_tell_param(&t, "tracking_number", e->tracking_number);
  }
  notif_tell_words(&t, "outcome", finding_words[f].en, finding_words[f].zh);
  return notif_tell(state, tx, m, &t);
}

static const words_t notice_words[] = {
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_UNSPECIFIED] = {"an update",
                                                                                "有新动态"},
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_STALLED] =
        {"no scan for a while, we asked the carrier", "长时间未更新，我们已联系承运商"},
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_MOVING_AGAIN] = {"moving again",
                                                                                 "已恢复运输"},
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_LATE] =
        {"later than expected, we asked the carrier", "晚于预计送达时间，我们已联系承运商"},
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_CARRIER_VERIFYING] =
        {"we asked the carrier to verify the delivery", "我们已请承运商核实妥投情况"},
    [AFTERSALES__V1__TRACKING_NOTICE_KIND__TRACKING_NOTICE_KIND_RETURN_LATE] =
        {"your return has not reached the warehouse yet", "您的退货尚未到达仓库"},
};

int notif_on_tracking(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__TrackingNotice *e = E(m, tracking_notice);
  if (e->case_id[0] && !case_ok(m, e->case_id)) return 0;
  if (!e->case_id[0] && !as_envelope_id_ok(e->buyer_id))
    return as_tx_reject(m, "neither a case nor a buyer"), 0;
  unsigned k = (unsigned)e->kind;
  if (k >= sizeof notice_words / sizeof *notice_words) return as_tx_reject(m, "kind unknown"), 0;
  if (!text_ok(m, e->carrier, "carrier") || !text_ok(m, e->tracking_number, "tracking_number"))
    return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "tracking.notice");
  t.buyer_id = e->buyer_id;
  t.locale = e->locale;
  notif_tell_param(&t, "carrier", e->carrier);
  notif_tell_param(&t, "tracking_number", e->tracking_number);
  notif_tell_words(&t, "status", notice_words[k].en, notice_words[k].zh);
  return notif_tell(state, tx, m, &t);
}

/* Only a case closed is told from the state changes (the other steps have
 * their own events); the survey follows AS_NOTIFICATION_SURVEY_DELAY_H later. */
int notif_on_state(void *state, as_tx_t *tx, as_msg_t *m) {
  const Aftersales__V1__CaseStateChanged *e = E(m, case_state_changed);
  if (e->to_state != AFTERSALES__V1__CASE_STATE__CASE_STATE_CLOSED) return 0;
  if (!case_ok(m, e->case_id)) return 0;
  notif_tell_t t;
  notif_tell_init(&t, m, "case.closed");
  int rc = notif_tell(state, tx, m, &t);
  return rc < 0 ? rc : notif_survey_arm(state, tx, e->case_id);
}

static int channel_name(Aftersales__V1__Channel c, const char **out) {
  static const char *const names[] = {NULL, "sms", "email", "push", "in_app"};
  if ((unsigned)c >= 5 || !names[c]) return -1;
  *out = names[c];
  return 0;
}

/* Any worker or agent asks for a template by name, with its parameters. */
int notif_on_requested(void *state, as_tx_t *tx, as_msg_t *m) {
  notif_t *x = state;
  const Aftersales__V1__NotificationRequested *e = E(m, notification_requested);
  if (e->case_id[0] && !case_ok(m, e->case_id)) return 0;
  if (!as_uuid_valid(e->notification_id)) return as_tx_reject(m, "notification_id not a UUID"), 0;
  if (!e->case_id[0] && !as_envelope_id_ok(e->buyer_id))
    return as_tx_reject(m, "neither a case nor a buyer"), 0;
  if (!notif_templates_find(x->templates, e->template_id, "", x->conf->default_locale))
    return as_tx_reject(m, "template_id unknown"), 0;
  if (e->n_params > NOTIF_PARAMS_MAX || e->n_channels > 4)
    return as_tx_reject(m, "more than 12 params or 4 channels"), 0;
  const char *ch[4];
  for (size_t i = 0; i < e->n_channels; i++)
    if (channel_name(e->channels[i], &ch[i]) < 0) return as_tx_reject(m, "channel unknown"), 0;
  notif_tell_t t;
  notif_tell_init(&t, m, e->template_id);
  for (size_t i = 0; i < e->n_params; i++) {
    if (!notif_text_ok(e->params[i]->value, NOTIF_PARAM_MAX) || strlen(e->params[i]->key) > 32)
      return as_tx_reject(m, "a param longer than 1000 bytes or with control characters"), 0;
    notif_tell_param(&t, e->params[i]->key, e->params[i]->value);
  }
  t.notification_id = e->notification_id;
  t.buyer_id = e->buyer_id;
  t.locale = e->locale;
  t.urgent = e->urgent;
  if (e->n_channels) {
    t.channels = ch;
    t.nchannels = e->n_channels;
  }
  return notif_tell(x, tx, m, &t);
}

#define P(x) AFTERSALES__V1__ENVELOPE__PAYLOAD_##x
static const struct {
  Aftersales__V1__Envelope__PayloadCase payload;
  as_msg_fn fn;
} tellers[] = {
    {P(BUYER_ACKNOWLEDGED), notif_on_acknowledged},
    {P(REQUEST_REJECTED), notif_on_rejected},
    {P(CASE_STATE_CHANGED), notif_on_state},
    {P(REVIEW_DECIDED), notif_on_decided},
    {P(RETURN_INSTRUCTIONS), notif_on_instructions},
    {P(GOODWILL_OFFERED), notif_on_goodwill},
    {P(REFUND_ISSUED), notif_on_refund},
    {P(EXCHANGE_REQUESTED), notif_on_exchange},
    {P(COUPON_ISSUED), notif_on_coupon},
    {P(INSPECTION_COMPLETED), notif_on_inspected},
    {P(COMPENSATION_GRANTED), notif_on_compensation},
    {P(DELIVERY_OUTCOME), notif_on_outcome},
    {P(TRACKING_NOTICE), notif_on_tracking},
    {P(NOTIFICATION_REQUESTED), notif_on_requested},
};

static as_msg_fn teller(Aftersales__V1__Envelope__PayloadCase p) {
  for (size_t i = 0; i < sizeof tellers / sizeof *tellers; i++)
    if (tellers[i].payload == p) return tellers[i].fn;
  return NULL;
}

int notif_events_apply(void *state, as_tx_t *tx, as_msg_t *const *msgs, size_t n) {
  notif_t *x = state;
  int rc = 0;
  x->batching = true;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    as_msg_fn fn = teller(msgs[i]->env->payload_case);
    if (fn && msgs[i]->state == AS_MSG_NEW) rc = fn(x, tx, msgs[i]);
  }
  x->batching = false;
  if (rc < 0) {
    notif_tell_drop(x);
    return rc;
  }
  return notif_tell_flush(x, tx);
}
