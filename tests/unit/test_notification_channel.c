/* Unit tests for notif_channel: the circuit breaker's states (closed,
 * open for the cool-off, one trial, closed or re-opened by it), the
 * judgement of finished transfers, the refusal of what cannot be sent, and
 * the webhook body (escaped JSON) as it goes on the wire. */
#include <string.h>

#include "../../services/notification/notif_channel.h"
#include "as_test.h"

AS_TEST(breaker_opens_after_consecutive_failures_and_one_trial_closes_it) {
  notif_breaker_t b = {0};
  AS_CHECK(notif_breaker_allows(&b, 0));
  AS_CHECK(!notif_breaker_record(&b, false, 3, 1000, 10));
  AS_CHECK(!notif_breaker_record(&b, true, 3, 1000, 20)); /* a success resets the count */
  AS_CHECK(!notif_breaker_record(&b, false, 3, 1000, 30));
  AS_CHECK(!notif_breaker_record(&b, false, 3, 1000, 40));
  AS_CHECK(notif_breaker_record(&b, false, 3, 1000, 50)); /* third in a row: opens */
  AS_CHECK(notif_breaker_open(&b));
  AS_CHECK(!notif_breaker_allows(&b, 1049));
  AS_CHECK(!notif_breaker_record(&b, false, 3, 1000, 60));  /* in flight before: no change */
  AS_CHECK(notif_breaker_allows(&b, 1050));                 /* the trial */
  AS_CHECK(!notif_breaker_allows(&b, 1051));                /* only one */
  AS_CHECK(notif_breaker_record(&b, false, 3, 1000, 1100)); /* trial failed: open again */
  AS_CHECK(!notif_breaker_allows(&b, 2099));
  AS_CHECK(notif_breaker_allows(&b, 2100));
  AS_CHECK(!notif_breaker_record(&b, true, 3, 1000, 2110));
  AS_CHECK(!notif_breaker_open(&b));
  AS_CHECK(notif_breaker_allows(&b, 2111));
  AS_CHECK_INT_EQ(b.failures, 0);
}

static const notif_send_conf_t conf = {.smtp_url = "smtp://127.0.0.1:1",
                                       .smtp_from = "care@shop.example",
                                       .sms_url = "http://127.0.0.1:1/sms",
                                       .push_url = "",
                                       .secret = "k",
                                       .timeout_ms = 1000};

static notif_msg_t msg(const char *address) {
  return (notif_msg_t){
      "d-1", "n-1", "c-1", "case.acknowledged", "en", "Subject", "line\n\"quoted\"", address};
}

AS_TEST(nothing_to_send_is_refused_with_a_code) {
  char code[48];
  notif_req_t r = {0};
  notif_msg_t m = msg("+86138");
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_PUSH, &conf, &m, code), -ENOENT);
  AS_CHECK_STR_EQ(code, "channel_not_configured");
  notif_channel_release(&r);
  m = msg("");
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_SMS, &conf, &m, code), -ENOENT);
  AS_CHECK_STR_EQ(code, "no_address");
  notif_channel_release(&r);
  m = msg("a@b.example>\r\nBcc: <x@y.example");
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_EMAIL, &conf, &m, code), -EINVAL);
  AS_CHECK_STR_EQ(code, "bad_address");
  notif_channel_release(&r);
  notif_channel_release(&r); /* twice is harmless */
}

AS_TEST(webhook_body_is_escaped_json) {
  char code[48];
  notif_req_t r = {0};
  notif_msg_t m = msg("+86138");
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_SMS, &conf, &m, code), 0);
  AS_CHECK_STR_EQ(as_buf_str(&r.payload),
                  "{\"delivery_id\":\"d-1\",\"notification_id\":\"n-1\",\"channel\":\"sms\","
                  "\"to\":\"+86138\",\"case_id\":\"c-1\",\"template_id\":\"case.acknowledged\","
                  "\"locale\":\"en\",\"body\":\"line\\u000a\\\"quoted\\\"\"}");
  notif_channel_release(&r);
}

/* A transfer that never reached a gateway (port 1 refuses) is judged a
 * transient connection failure, on both protocols. */
AS_TEST(outcomes_of_transport_failures_are_transient) {
  char code[48];
  notif_req_t r = {0};
  notif_msg_t m = msg("a@b.example");
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_EMAIL, &conf, &m, code), 0);
  CURLcode cc = curl_easy_perform(r.easy);
  AS_CHECK_INT_EQ(notif_channel_outcome(&r, NOTIF_CH_EMAIL, cc, code), NOTIF_RETRY);
  AS_CHECK_STR_EQ(code, "connect_failed");
  notif_channel_release(&r);
  AS_CHECK_INT_EQ(notif_channel_prepare(&r, NOTIF_CH_SMS, &conf, &m, code), 0);
  AS_CHECK_INT_EQ(notif_channel_outcome(&r, NOTIF_CH_SMS, CURLE_OPERATION_TIMEDOUT, code),
                  NOTIF_RETRY);
  AS_CHECK_STR_EQ(code, "timeout");
  notif_channel_release(&r);
}

AS_TEST(channel_names_and_numbers) {
  AS_CHECK_INT_EQ(notif_ch_parse("email"), NOTIF_CH_EMAIL);
  AS_CHECK_INT_EQ(notif_ch_parse("in_app"), -1);
  AS_CHECK_INT_EQ(notif_ch_proto("push"), 3);
  AS_CHECK_INT_EQ(notif_ch_proto("in_app"), 4);
  AS_CHECK_INT_EQ(notif_ch_proto("fax"), 0);
}
