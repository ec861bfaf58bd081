/* logi_out: what every logistics module shares: an envelope queued on a
 * topic, the SlaBreached and TrackingNotice events, the inquiry ids of
 * i13 (README "Identifiers") and the checks of carriers' free text. */
#include <stdio.h>
#include <string.h>

#include "logistics.h"

int logi_publish(as_tx_t *tx, const as_msg_t *cause, const char *topic, const char *key,
                 const char *case_id, const char *order_id, Aftersales__V1__Envelope *env) {
  env->case_id = (char *)(case_id ? case_id : "");
  env->order_id = (char *)(order_id ? order_id : "");
  return as_tx_publish(tx, cause, topic, key, env);
}

int logi_breach(as_tx_t *tx, const as_msg_t *cause, const char *case_id, const char *order_id,
                const char *clock, int64_t due_us, const char *escalated_to) {
  Aftersales__V1__SlaBreached b = AFTERSALES__V1__SLA_BREACHED__INIT;
  b.case_id = (char *)case_id;
  b.clock = (char *)clock;
  b.due_at_us = due_us;
  b.breached_at_us = as_now_us();
  b.escalated_to = (char *)escalated_to;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SLA_BREACHED;
  env.sla_breached = &b;
  return logi_publish(tx, cause, AS_TOPIC_NAME_CASES, case_id, case_id, order_id, &env);
}

int logi_notice(as_tx_t *tx, const as_msg_t *cause, const logi_ask_t *a, const char *inquiry_id,
                int kind) {
  Aftersales__V1__TrackingNotice t = AFTERSALES__V1__TRACKING_NOTICE__INIT;
  t.order_id = (char *)(a->order_id ? a->order_id : "");
  t.buyer_id = (char *)(a->buyer_id ? a->buyer_id : "");
  t.case_id = (char *)(a->case_id ? a->case_id : "");
  t.carrier = (char *)(a->carrier ? a->carrier : "");
  t.tracking_number = (char *)(a->tracking_number ? a->tracking_number : "");
  t.kind = kind;
  t.last_status = (char *)(a->last_status ? a->last_status : "");
  t.last_scan_at_us = a->last_scan_us;
  t.inquiry_id = (char *)(inquiry_id ? inquiry_id : "");
  t.noticed_at_us = as_now_us();
  t.locale = (char *)(a->locale ? a->locale : "");
  t.ask_carrier_at_us = a->ask_carrier_at_us;
  Aftersales__V1__Envelope env = AFTERSALES__V1__ENVELOPE__INIT;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_TRACKING_NOTICE;
  env.tracking_notice = &t;
  const char *key = t.case_id[0] ? t.case_id : t.order_id;
  return logi_publish(tx, cause, AS_TOPIC_NAME_LOGISTICS, key, t.case_id, t.order_id, &env);
}

static const char *const kind_names[] = {"", "delivered_not_received", "stalled", "not_received",
                                         "return_transit"};

const char *logi_kind_name(int kind) {
  return kind > 0 && kind < (int)AS_LEN(kind_names) ? kind_names[kind] : "";
}

void logi_inquiry_id(char out[AS_UUID_STRLEN + 1], int kind, const char *subject, int n) {
  char name[512];
  int len = snprintf(name, sizeof name, "%s|%s|%d", logi_kind_name(kind), subject, n);
  as_uuid_v5(out, "aftersales.carrier_inquiry", name,
             (size_t)(len < (int)sizeof name ? len : (int)sizeof name - 1));
}

bool logi_text_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n > max) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f) return false;
  return true;
}

bool logi_opt_id_ok(const char *s) {
  return !s[0] || as_envelope_id_ok(s);
}

const char *logi_i64(char buf[24], long long v) {
  snprintf(buf, 24, "%lld", v);
  return buf;
}
