/* Unit tests for the notification templates: the built-in file parses with
 * every template in en and zh-CN and is the one the README and
 * deploy/config reproduce; every refusal names its line or what is
 * missing; the locale fallbacks; rendering fills parameters, escapes
 * values per channel (HTML for e-mail, plain for SMS) and cuts an SMS on a
 * UTF-8 boundary; amounts per currency with its minor units. */
#include "../../services/notification/notif_templates.h"
#include "as_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD "version = t1\n"
#define EN "[a.b en]\nsubject = S {x}\nsms = M {x}\nemail = E {x}\npush = P {x}\n"
#define ZH "[a.b zh-CN]\nsubject = 主题\nsms = 短信 {x}\nemail = 邮件\npush = 推送\n"

static notif_templates_t *parse_ok(const char *text) {
  char err[512] = "";
  notif_templates_t *t = notif_templates_parse(text, strlen(text), err, sizeof err);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK(t != NULL);
  return t;
}

static void refused(const char *text, const char *want) {
  char err[512] = "";
  notif_templates_t *t = notif_templates_parse(text, strlen(text), err, sizeof err);
  if (t != NULL || strstr(err, want) == NULL) {
    fprintf(stderr, "# templates:\n%s\n", text);
    notif_templates_free(t);
    AS_CHECK_STR_EQ(err, want);
  }
}

static const char *render(const char *text, notif_escape_t esc, size_t max, as_buf_t *b) {
  static const notif_param_t p[] = {{"x", "<a&b>"}, {"case_number", "AS-1"}};
  as_buf_reset(b);
  notif_render(b, text, p, 2, esc, max);
  return as_buf_str(b);
}

AS_TEST(builtin_parses_with_every_template_in_both_languages) {
  notif_templates_t *t = parse_ok(notif_templates_default);
  AS_CHECK_STR_EQ(notif_templates_version(t), "builtin-3");
  static const char *const ids[] = {
      "case.acknowledged", "request.rejected",     "review.approved",      "review.rejected",
      "review.evidence",   "review.manual",        "return.instructions",  "return.packaging",
      "return.reminder",   "goodwill.offered",     "refund.issued",        "exchange.requested",
      "coupon.issued",     "inspection.completed", "compensation.granted", "delivery.outcome",
      "tracking.notice",   "case.closed",          "case.survey"};
  for (size_t i = 0; i < sizeof ids / sizeof *ids; i++) {
    const notif_text_t *en = notif_templates_find(t, ids[i], "en", "zh-CN");
    const notif_text_t *zh = notif_templates_find(t, ids[i], "zh-CN", "en");
    AS_CHECK(en != NULL && zh != NULL);
    AS_CHECK_STR_EQ(en->locale, "en");
    AS_CHECK_STR_EQ(zh->locale, "zh-CN");
  }
  const notif_text_t *a = notif_templates_find(t, "case.acknowledged", "en", "zh-CN");
  AS_CHECK_STR_EQ(a->part[NOTIF_PART_SMS],
                  "We received your after-sales request {case_number} and are handling it.");
  AS_CHECK(strchr(a->part[NOTIF_PART_EMAIL], '\n') != NULL); /* "\n" unescaped */
  notif_templates_free(t);
}

static char *slurp(const char *path) {
  FILE *f = fopen(path, "rb");
  AS_CHECK(f != NULL);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  return buf;
}

/* The README and deploy/config reproduce the built-in templates (the tests
 * run from the repository root). */
AS_TEST(readme_and_deploy_config_reproduce_the_builtin) {
  const char *cfg = slurp("deploy/config/notification.templates");
  AS_CHECK_MEM_EQ(cfg, strlen(cfg), notif_templates_default, strlen(notif_templates_default));
  const char *buf = slurp("README.md");
  const char *begin = strstr(buf, "<!-- templates:begin -->\n```\n");
  AS_CHECK(begin != NULL);
  begin += strlen("<!-- templates:begin -->\n```\n");
  const char *end = strstr(begin, "```\n<!-- templates:end -->");
  AS_CHECK(end != NULL);
  AS_CHECK_MEM_EQ(begin, (size_t)(end - begin), notif_templates_default,
                  strlen(notif_templates_default));
}

AS_TEST(refusals_name_their_line) {
  refused(EN ZH, "missing version");
  refused(HEAD, "missing templates");
  refused(HEAD EN, "missing [a.b zh-CN]");
  refused(HEAD "subject = x\n", "line 2: a text outside any [<template id> <locale>] section");
  refused(HEAD EN "title = x\n", "line 7: unknown key (subject, sms, email, push)");
  refused(HEAD EN "sms = again\n", "line 7: key set twice in this section");
  refused(HEAD "[a.b en]\nsubject = s\nsms = s\nemail = e\n" ZH, "line 2: [a.b en] has no push");
  refused(HEAD EN EN, "line 7: template and locale defined twice");
  refused(HEAD "[a.b]\n", "line 2: a section is [<template id> <locale>]");
  refused(HEAD "[A/B en]\n", "line 2: template id is [a-z0-9_.], 1-64 bytes");
  refused(HEAD "[a.b en]\nsubject = {x\n", "line 3: '{' opens no {parameter}");
  refused(HEAD "[a.b en]\nsubject = x}\n", "line 3: a lone '}'");
  refused(HEAD "[a.b en]\nsubject = {X}\n", "line 3: a parameter name is [a-z0-9_]");
  refused(HEAD "[a.b en]\nsubject =\n", "line 3: empty text");
  refused(HEAD "version = t2\n", "line 2: version set twice");
  refused(HEAD EN "version = t2\n", "line 7: version comes before the first section");
  refused(HEAD "junk\n", "line 2: expected key = value");
  refused(HEAD "[a.b en]\nsubject = \xff\n", "line 3: not UTF-8");
  char nul[] = HEAD "x\0y";
  char err[128];
  AS_CHECK(notif_templates_parse(nul, sizeof nul - 1, err, sizeof err) == NULL);
  AS_CHECK_STR_EQ(err, "line 2: NUL byte");
  AS_CHECK(notif_templates_load("/nonexistent/t", err, sizeof err) == NULL);
  AS_CHECK_STR_EQ(err, "/nonexistent/t: No such file or directory");
}

AS_TEST(locale_falls_back_to_language_then_default) {
  notif_templates_t *t = parse_ok(HEAD EN ZH "# comment\n\n");
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "zh-CN", "en")->locale, "zh-CN");
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "zh-TW", "en")->locale, "zh-CN");
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "en-GB", "zh-CN")->locale, "en");
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "fr", "zh-CN")->locale, "zh-CN");
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "", "en")->locale, "en");
  AS_CHECK(notif_templates_find(t, "c.d", "en", "en") == NULL);
  AS_CHECK(notif_templates_has_locale(t, "zh-CN"));
  AS_CHECK(!notif_templates_has_locale(t, "fr"));
  notif_templates_free(t);
}

/* [words <locale>]: the words values are told in, found by locale then by
 * language; none of them a template; refused like the rest. */
AS_TEST(words_by_locale_then_language) {
  notif_templates_t *t =
      parse_ok(HEAD EN "[words en]\nreason.x.y = the time passed\n" ZH
                       "[words zh-CN]\nreason.x.y = 已超过期限\nnote = 第一行\\n第二行\n");
  AS_CHECK_STR_EQ(notif_templates_word(t, "reason.x.y", "en"), "the time passed");
  AS_CHECK_STR_EQ(notif_templates_word(t, "reason.x.y", "en-GB"), "the time passed");
  AS_CHECK_STR_EQ(notif_templates_word(t, "reason.x.y", "zh-CN"), "已超过期限");
  AS_CHECK_STR_EQ(notif_templates_word(t, "reason.x.y", "zh-TW"), "已超过期限");
  AS_CHECK_STR_EQ(notif_templates_word(t, "note", "zh-CN"), "第一行\n第二行");
  AS_CHECK(notif_templates_word(t, "note", "en") == NULL);
  AS_CHECK(notif_templates_word(t, "reason.x.y", "fr") == NULL);
  AS_CHECK(notif_templates_word(t, "reason.x.y", "") == NULL);
  AS_CHECK(notif_templates_find(t, "words", "en", "en") == NULL);
  AS_CHECK_STR_EQ(notif_templates_find(t, "a.b", "zh-CN", "en")->part[NOTIF_PART_SMS], "短信 {x}");
  notif_templates_free(t);
  refused(HEAD EN ZH "[words en]\nA/B = x\n", "line 13: a word's key is [a-z0-9_.], 1-64 bytes");
  refused(HEAD EN ZH "[words en]\nk = x\nk = y\n", "line 14: word set twice in this section");
  refused(HEAD EN ZH "[words en]\nk =\n", "line 13: empty text");
  refused(HEAD EN ZH "[words en]\nversion = t2\n", "line 13: version comes before the first");
  /* the built-in has the reason words in both languages */
  t = parse_ok(notif_templates_default);
  AS_CHECK(notif_templates_word(t, "reason.window.claim_expired", "en") != NULL);
  AS_CHECK(notif_templates_word(t, "reason.window.claim_expired", "zh-CN") != NULL);
  AS_CHECK(notif_templates_word(t, "packaging.untranslated", "zh-CN") != NULL);
  AS_CHECK(notif_templates_find(t, "review.approved.no_amount", "zh-CN", "en") != NULL);
  notif_templates_free(t);
}

AS_TEST(values_escaped_per_channel_and_sms_cut_on_a_character) {
  as_buf_t b;
  as_buf_init(&b);
  AS_CHECK_STR_EQ(render("E {x} {case_number} {{lit}} {nope}.", NOTIF_ESC_HTML, 0, &b),
                  "E &lt;a&amp;b&gt; AS-1 {lit} .");
  AS_CHECK_STR_EQ(render("M {x}", NOTIF_ESC_PLAIN, 0, &b), "M <a&b>");
  /* 3-byte characters cut at 7 bytes keep two of them, never half of one */
  AS_CHECK_STR_EQ(render("短信短信", NOTIF_ESC_PLAIN, 7, &b), "短信");
  AS_CHECK_STR_EQ(render("abcdef", NOTIF_ESC_PLAIN, 4, &b), "abcd");
  static const notif_param_t ctl[] = {{"v", "a\tb\nc\x01"}};
  as_buf_reset(&b);
  notif_render(&b, "{v}", ctl, 1, NOTIF_ESC_PLAIN, 0);
  AS_CHECK_STR_EQ(as_buf_str(&b), "a b\nc ");
  as_buf_free(&b);
}

AS_TEST(amounts_with_their_minor_units) {
  char s[48];
  notif_amount(s, sizeof s, 12900, "CNY");
  AS_CHECK_STR_EQ(s, "¥129.00");
  notif_amount(s, sizeof s, 1290, "USD");
  AS_CHECK_STR_EQ(s, "$12.90");
  notif_amount(s, sizeof s, 1290, "JPY");
  AS_CHECK_STR_EQ(s, "¥1290");
  notif_amount(s, sizeof s, 1250, "KWD");
  AS_CHECK_STR_EQ(s, "KWD 1.250");
  notif_amount(s, sizeof s, 5, "CHF");
  AS_CHECK_STR_EQ(s, "CHF 0.05");
  notif_amount(s, sizeof s, -5, "EUR");
  AS_CHECK_STR_EQ(s, "-€0.05");
  notif_amount(s, sizeof s, INT64_MIN, "USD");
  AS_CHECK_STR_EQ(s, "-$92233720368547758.08");
}
