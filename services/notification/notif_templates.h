/* notif_templates: what the buyer is told, as a readable file an operator
 * edits (AS_NOTIFICATION_TEMPLATES_FILE, format in the README, re-read on
 * SIGHUP), and the pure rendering of one text with its parameters, escaped
 * for its channel. No database, no I/O but the file: unit-tested and
 * fuzzed (tests/unit/test_notification_templates.c,
 * tests/fuzz/fuzz_templates.c).
 *
 * The file: "version = V" once, then sections "[<template id> <locale>]"
 * each with the four texts "subject = ...", "sms = ...", "email = ...",
 * "push = ..." (push is also the in-app body; subject the e-mail subject,
 * the push and in-app title). "\n" in a text is a new line. Every template
 * exists in en and zh-CN at least. Parameters are "{name}" ([a-z0-9_],
 * up to 32 bytes); "{{" and "}}" are literal braces. A refusal names its
 * line ("line N: ...") or what is missing ("missing ...").
 * A section "[words <locale>]" is no template: its lines "key = text"
 * (key [a-z0-9_.]) are the words of that locale that values are told in,
 * e.g. "reason.window.claim_expired = the time to claim has passed".
 *
 * Ownership: a notif_templates_t owns every string it returns (valid until
 * notif_templates_free). Rendering appends to the caller's as_buf_t. */
#ifndef NOTIF_TEMPLATES_H
#define NOTIF_TEMPLATES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "as_buf.h"
#include "as_err.h"

#define NOTIF_TEXT_MAX 4000  /* bytes of one text in the file */
#define NOTIF_SMS_MAX 480    /* bytes of a rendered SMS (cut on a UTF-8 boundary) */
#define NOTIF_PUSH_MAX 1000  /* bytes of a rendered push / in-app body */
#define NOTIF_PARAM_MAX 1000 /* bytes of one parameter's value */

typedef enum {
  NOTIF_PART_SUBJECT,
  NOTIF_PART_SMS,
  NOTIF_PART_EMAIL,
  NOTIF_PART_PUSH,
  NOTIF_NPARTS
} notif_part_t;

typedef struct notif_text {
  const char *id, *locale;
  const char *part[NOTIF_NPARTS];
} notif_text_t;

typedef struct notif_templates notif_templates_t;

/* The built-in templates (reproduced in the README). */
extern const char notif_templates_default[];

/* Parses text[0..len); returns the templates or NULL with the reason in
 * err. Free with notif_templates_free. */
notif_templates_t *notif_templates_parse(const char *text, size_t len, char *err, size_t errlen);
/* Reads and parses the file at path (at most 1 MiB); NULL with the reason. */
notif_templates_t *notif_templates_load(const char *path, char *err, size_t errlen);
void notif_templates_free(notif_templates_t *t); /* NULL is a no-op */
const char *notif_templates_version(const notif_templates_t *t);
/* True if some template names locale (a locale checked at start). */
bool notif_templates_has_locale(const notif_templates_t *t, const char *locale);

/* The texts of template id in locale, else in locale's language ("zh" for
 * "zh-TW" finds "zh-CN"), else in fallback; NULL if id is unknown. */
const notif_text_t *notif_templates_find(const notif_templates_t *t, const char *id,
                                         const char *locale, const char *fallback);

/* The word key in locale, else in locale's language; NULL if neither
 * has it (the caller says what it has, e.g. the code). */
const char *notif_templates_word(const notif_templates_t *t, const char *key, const char *locale);

typedef struct notif_param {
  const char *name, *value; /* borrowed */
} notif_param_t;

typedef enum { NOTIF_ESC_PLAIN, NOTIF_ESC_HTML } notif_escape_t;

/* Appends text with every {name} replaced by its value in p[0..np) (an
 * unknown name renders empty), values escaped as esc says (HTML: & < > " '
 * as entities; the template's own text is trusted), the whole cut to max
 * bytes (0: no bound) on a UTF-8 character boundary. Control bytes of a
 * value but newline become spaces. */
void notif_render(as_buf_t *out, const char *text, const notif_param_t *p, size_t np,
                  notif_escape_t esc, size_t max);

/* Formats minor units of currency as the buyer reads it ("¥129.00",
 * "$12.90", "¥1290" for JPY, "KWD 1.250"): the currency's minor units from
 * a small table (2 if not listed). Returns the length written (cut to len). */
size_t notif_amount(char *out, size_t len, int64_t minor, const char *currency);

#endif
