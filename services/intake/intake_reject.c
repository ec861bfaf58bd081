/* intake_reject: the RequestRejected answer. The reason code is for
 * machines; the two messages are what a storefront may show the buyer in
 * English or Chinese, optionally naming the field at fault. Nothing of the
 * buyer's own text is echoed back. */
#include <stdio.h>
#include <string.h>

#include "as_topics.h"
#include "intake.h"

typedef struct reason_text {
  const char *code, *en, *zh;
} reason_text_t;

static const reason_text_t texts[] = {
    {"missing_field", "a required field is missing", "缺少必填字段"},
    {"invalid_field", "a field has an invalid value", "字段取值无效"},
    {"unknown_enum", "a field has an unknown value", "字段取值未知"},
    {"unknown_order", "the order was not found", "未找到该订单"},
    {"not_buyers_order", "the order does not belong to this buyer", "该订单不属于当前买家"},
    {"not_buyers_case", "the case does not belong to this buyer", "该售后单不属于当前买家"},
    {"unknown_line", "an order line was not found in the order", "订单中没有该商品行"},
    {"duplicate_line", "an order line is listed twice", "同一商品行重复出现"},
    {"too_many_lines", "too many order lines in one request", "一次申请的商品行过多"},
    {"request_too_large", "the request and the order lines it claims are too large for one case",
     "申请及其商品行的数据量过大，无法生成一个售后单"},
    {"invalid_quantity", "the quantity must be at least 1", "数量必须至少为 1"},
    {"quantity_exceeded", "the quantity exceeds what was bought and not yet claimed",
     "申请数量超过购买数量减去已申请数量"},
    {"order_cancelled", "the order was cancelled", "该订单已取消"},
    {"mixed_currency", "the order lines are in different currencies", "订单商品行币种不一致"},
    {"comment_invalid_utf8", "the text is not valid UTF-8", "文本不是有效的 UTF-8 编码"},
    {"comment_too_long", "the text is too long", "文本过长"},
    {"too_many_attachments", "too many attachments", "附件数量过多"},
    {"attachment_not_https", "attachments must be https links", "附件必须是 https 链接"},
    {"attachment_media_type", "the attachment type is not supported (photo or video only)",
     "不支持的附件类型（仅限图片或视频）"},
    {"attachment_sha256", "the attachment checksum is missing or malformed",
     "附件校验值缺失或格式错误"},
    {"attachment_size", "the attachment size is empty or too large", "附件大小为空或过大"},
    {"amount_overflow", "the amounts of the order lines are too large", "订单商品行金额过大"},
    {"order_not_paid", "the order has not been paid", "该订单尚未支付"},
    {"currency_mismatch", "the order was paid in another currency than its lines",
     "订单支付币种与商品币种不一致"},
    {"payment_unallocatable", "the payment cannot be attributed to the order's lines",
     "无法将支付金额分摊到订单商品行"},
    {"submitted_before_order", "the request is dated before the order was placed",
     "申请时间早于下单时间"},
    {"submitted_in_future", "the request is dated in the future", "申请时间晚于当前时间"},
    {"idempotency_key_reused", "this idempotency key was used for a different request",
     "该幂等键已用于另一个申请"},
    /* The runtime's reasons, for requests refused before intake read them
     * (intake_refused.c): the field named is the first one at fault. */
    {"string_nul", "a text field contains a NUL byte", "文本字段包含空字符"},
    {"invalid_utf8", "a text field is not valid UTF-8", "文本字段不是有效的 UTF-8 编码"},
    {"payload_too_large", "the request is too large", "申请数据过大"},
    {"contract_violation", "the request's envelope is malformed", "申请的消息封装格式错误"},
    {"unsupported_schema_version", "the request's schema version is not supported",
     "不支持该申请的数据格式版本"},
    {"event_id_reused", "the request's event id was already used for another message",
     "该申请的事件 ID 已被另一条消息使用"},
    {"handler_failed", "the request could not be processed", "无法处理该申请"},
    {"idempotency_key_in_progress",
     "a request with this idempotency key is still being processed; retry later",
     "使用该幂等键的申请仍在处理中，请稍后重试"},
};

static const reason_text_t *text_of(const char *code) {
  for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++)
    if (strcmp(texts[i].code, code) == 0) return &texts[i];
  return &texts[1];
}

int intake_reject_publish(intake_t *x, as_tx_t *tx, const as_msg_t *cause, const char *request_id,
                          const char *order_id, const char *buyer_id, const char *idem_key,
                          const char *code, const char *field) {
  const reason_text_t *t = text_of(code);
  char en[256], zh[256];
  bool named = field && field[0];
  snprintf(en, sizeof en, "%s%s%s", t->en, named ? ": " : "", named ? field : "");
  snprintf(zh, sizeof zh, "%s%s%s", t->zh, named ? "：" : "", named ? field : "");
  Aftersales__V1__RequestRejected rj = AFTERSALES__V1__REQUEST_REJECTED__INIT;
  rj.request_id = (char *)request_id;
  rj.order_id = (char *)(as_envelope_id_ok(order_id) ? order_id : "");
  rj.buyer_id = (char *)buyer_id;
  rj.reason_code = (char *)code;
  rj.message_en = en;
  rj.message_zh = zh;
  rj.idempotency_key = (char *)idem_key;
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.order_id = rj.order_id;
  env.case_id = rj.order_id[0] ? (char *)"" : (char *)request_id;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_REQUEST_REJECTED;
  env.request_rejected = &rj;
  char labels[80];
  snprintf(labels, sizeof labels, "reason=\"%s\"", code);
  as_counter_add(as_metrics_counter(as_worker_metrics(x->w), "as_intake_rejected_total",
                                    "Requests rejected, by reason.", labels),
                 1);
  return as_tx_publish(tx, cause, AS_TOPIC_NAME_CASES, rj.order_id[0] ? rj.order_id : request_id,
                       &env);
}
