/* notif_templates: the template file's parser, the lookup by id and locale
 * with its fallbacks, and the rendering of one text for one channel (see
 * notif_templates.h). */
#include "notif_templates.h"
#include "as_docfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_utf8.h"

#define MAX_SECTIONS 512
#define MAX_WORDS 1024
#define WORDS_SECTION "words"
#define NAME_MAX_ 64
#define PARAM_NAME_MAX 32

typedef struct word {
  char *locale, *key, *value;
} word_t;

struct notif_templates {
  char *version;
  notif_text_t *v; /* every string malloc'ed */
  size_t n;
  word_t *w; /* the [words <locale>] entries; every string malloc'ed */
  size_t nw;
};

typedef struct parser {
  notif_templates_t *t;
  notif_text_t *cur;
  const char *words;  /* in a [words <locale>] section: its locale */
  char *words_locale; /* owned: the last [words] section's locale */
  int line, cur_line;
  char *err;
  size_t errlen;
} parser_t;

static const char *const part_names[NOTIF_NPARTS] = {"subject", "sms", "email", "push"};

static int fail(parser_t *ps, const char *what) {
  as_err_set(ps->err, ps->errlen, "line %d: %s", ps->line, what);
  return -1;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  size_t n = strlen(s);
  while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t' || s[n - 1] == '\r')) s[--n] = '\0';
  return s;
}

static bool name_ok(const char *s, bool locale) {
  size_t n = strlen(s);
  if (n == 0 || n > NAME_MAX_) return false;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
              (locale ? (c == '-' || (c >= 'A' && c <= 'Z')) : c == '.');
    if (!ok) return false;
  }
  return true;
}

/* Placeholders well formed: "{name}", "{{", "}}". */
static const char *braces_bad(const char *s) {
  for (; *s; s++) {
    if (*s == '{' && s[1] == '{') {
      s++;
    } else if (*s == '}' && s[1] == '}') {
      s++;
    } else if (*s == '}') {
      return "a lone '}' (write '}}' for a brace)";
    } else if (*s == '{') {
      const char *e = strchr(s, '}');
      size_t n = e ? (size_t)(e - s - 1) : 0;
      if (!e || n == 0 || n > PARAM_NAME_MAX) return "'{' opens no {parameter}";
      for (const char *c = s + 1; c < e; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= '0' && *c <= '9') || *c == '_'))
          return "a parameter name is [a-z0-9_]";
      s = e;
    }
  }
  return NULL;
}

/* "\n" becomes a new line, "\\" a backslash; copies into a new string. */
static char *unescape(const char *v) {
  char *o = malloc(strlen(v) + 1), *w = o;
  if (!o) return NULL;
  for (; *v; v++) {
    if (*v == '\\' && v[1] == 'n') {
      *w++ = '\n';
      v++;
    } else if (*v == '\\' && v[1] == '\\') {
      *w++ = '\\';
      v++;
    } else {
      *w++ = *v;
    }
  }
  *w = '\0';
  return o;
}

static const notif_text_t *exact(const notif_templates_t *t, const char *id, const char *loc) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].id, id) == 0 && strcmp(t->v[i].locale, loc) == 0) return &t->v[i];
  return NULL;
}

static const word_t *word_exact(const notif_templates_t *t, const char *key, const char *loc) {
  for (size_t i = 0; i < t->nw; i++)
    if (strcmp(t->w[i].key, key) == 0 && strcmp(t->w[i].locale, loc) == 0) return &t->w[i];
  return NULL;
}

/* "[words <locale>]": the words parameters are told in (reason codes), one
 * "key = text" a line, until the next section. */
static int words_section(parser_t *ps, const char *loc) {
  char *copy = strdup(loc);
  if (!copy) return fail(ps, "out of memory");
  free(ps->words_locale);
  ps->words = ps->words_locale = copy;
  return 0;
}

static int word(parser_t *ps, const char *key, const char *val) {
  if (!name_ok(key, false)) return fail(ps, "a word's key is [a-z0-9_.], 1-64 bytes");
  if (!val[0]) return fail(ps, "empty text");
  if (word_exact(ps->t, key, ps->words)) return fail(ps, "word set twice in this section");
  if (ps->t->nw == MAX_WORDS) return fail(ps, "more than 1024 words");
  word_t *x = &ps->t->w[ps->t->nw];
  x->locale = strdup(ps->words);
  x->key = strdup(key);
  x->value = unescape(val);
  ps->t->nw++;
  return x->locale && x->key && x->value ? 0 : fail(ps, "out of memory");
}

static int section(parser_t *ps, char *l) {
  size_t n = strlen(l);
  if (l[n - 1] != ']') return fail(ps, "a section is [<template id> <locale>]");
  l[n - 1] = '\0';
  char *sp = strchr(l + 1, ' ');
  if (!sp) return fail(ps, "a section is [<template id> <locale>]");
  *sp = '\0';
  char *id = trim(l + 1), *loc = trim(sp + 1);
  if (!name_ok(id, false)) return fail(ps, "template id is [a-z0-9_.], 1-64 bytes");
  if (!name_ok(loc, true)) return fail(ps, "locale is a BCP 47 tag such as en or zh-CN");
  ps->cur = NULL;
  ps->words = NULL;
  if (strcmp(id, WORDS_SECTION) == 0) return words_section(ps, loc);
  if (exact(ps->t, id, loc)) return fail(ps, "template and locale defined twice");
  if (ps->t->n == MAX_SECTIONS) return fail(ps, "more than 512 sections");
  notif_text_t *x = &ps->t->v[ps->t->n++];
  x->id = strdup(id);
  x->locale = strdup(loc);
  if (!x->id || !x->locale) return fail(ps, "out of memory");
  ps->cur = x;
  ps->cur_line = ps->line;
  return 0;
}

/* The section before the current line is complete. */
static int section_done(parser_t *ps) {
  if (!ps->cur) return 0;
  for (int p = 0; p < NOTIF_NPARTS; p++)
    if (!ps->cur->part[p]) {
      as_err_set(ps->err, ps->errlen, "line %d: [%s %s] has no %s", ps->cur_line, ps->cur->id,
                 ps->cur->locale, part_names[p]);
      return -1;
    }
  return 0;
}

static int setting(parser_t *ps, char *key, char *val) {
  if (strlen(val) > NOTIF_TEXT_MAX) return fail(ps, "a text is at most 4000 bytes");
  if (strcmp(key, "version") == 0) {
    if (ps->cur || ps->words) return fail(ps, "version comes before the first section");
    if (ps->t->version) return fail(ps, "version set twice");
    if (!name_ok(val, true) && !name_ok(val, false)) return fail(ps, "version is [A-Za-z0-9_.-]");
    return (ps->t->version = strdup(val)) ? 0 : fail(ps, "out of memory");
  }
  if (ps->words) return word(ps, key, val);
  if (!ps->cur) return fail(ps, "a text outside any [<template id> <locale>] section");
  int p = 0;
  while (p < NOTIF_NPARTS && strcmp(part_names[p], key) != 0) p++;
  if (p == NOTIF_NPARTS) return fail(ps, "unknown key (subject, sms, email, push)");
  if (ps->cur->part[p]) return fail(ps, "key set twice in this section");
  if (!val[0]) return fail(ps, "empty text");
  const char *bad = braces_bad(val);
  if (bad) return fail(ps, bad);
  return (ps->cur->part[p] = unescape(val)) ? 0 : fail(ps, "out of memory");
}

static int line(parser_t *ps, char *raw) {
  char *l = trim(raw);
  if (!as_utf8_valid(l, strlen(l))) return fail(ps, "not UTF-8");
  if (!l[0] || l[0] == '#') return 0;
  if (l[0] == '[') return section_done(ps) < 0 ? -1 : section(ps, l);
  char *eq = strchr(l, '=');
  if (!eq) return fail(ps, "expected key = value");
  *eq = '\0';
  return setting(ps, trim(l), trim(eq + 1));
}

/* Every template in en and zh-CN. */
static int finish(parser_t *ps) {
  if (section_done(ps) < 0) return -1;
  if (!ps->t->version) return as_err_set(ps->err, ps->errlen, "missing version"), -1;
  if (ps->t->n == 0) return as_err_set(ps->err, ps->errlen, "missing templates"), -1;
  static const char *const need[] = {"en", "zh-CN"};
  for (size_t i = 0; i < ps->t->n; i++)
    for (size_t k = 0; k < 2; k++)
      if (!exact(ps->t, ps->t->v[i].id, need[k])) {
        as_err_set(ps->err, ps->errlen, "missing [%s %s]", ps->t->v[i].id, need[k]);
        return -1;
      }
  return 0;
}

notif_templates_t *notif_templates_parse(const char *text, size_t len, char *err, size_t errlen) {
  parser_t ps = {.err = err, .errlen = errlen};
  as_err_set(err, errlen, "%s", "");
  if (len > AS_DOCFILE_MAX) return as_err_set(err, errlen, "templates are more than 1 MiB"), NULL;
  int nul_line = as_docfile_nul_line(text, len);
  if (nul_line) return as_err_set(err, errlen, "line %d: NUL byte", nul_line), NULL;
  char *buf = malloc(len + 1);
  ps.t = calloc(1, sizeof *ps.t);
  if (ps.t) ps.t->v = calloc(MAX_SECTIONS, sizeof *ps.t->v);
  if (ps.t) ps.t->w = calloc(MAX_WORDS, sizeof *ps.t->w);
  if (!buf || !ps.t || !ps.t->v || !ps.t->w) {
    as_err_set(err, errlen, "out of memory");
    goto failed;
  }
  memcpy(buf, text, len);
  buf[len] = '\0';
  for (char *l = buf; l;) {
    char *nl = strchr(l, '\n');
    if (nl) *nl = '\0';
    ps.line++;
    if (line(&ps, l) < 0) goto failed;
    l = nl ? nl + 1 : NULL;
  }
  if (finish(&ps) < 0) goto failed;
  free(buf);
  free(ps.words_locale);
  return ps.t;
failed:
  free(buf);
  free(ps.words_locale);
  notif_templates_free(ps.t);
  return NULL;
}

static void *parse_doc(const char *text, size_t len, char *err, size_t errlen) {
  return notif_templates_parse(text, len, err, errlen);
}

notif_templates_t *notif_templates_load(const char *path, char *err, size_t errlen) {
  return as_docfile_load(path, parse_doc, err, errlen);
}

void notif_templates_free(notif_templates_t *t) {
  if (!t) return;
  for (size_t i = 0; t->v && i < t->n; i++) {
    free((char *)t->v[i].id);
    free((char *)t->v[i].locale);
    for (int p = 0; p < NOTIF_NPARTS; p++) free((char *)t->v[i].part[p]);
  }
  free(t->v);
  for (size_t i = 0; t->w && i < t->nw; i++) {
    free(t->w[i].locale);
    free(t->w[i].key);
    free(t->w[i].value);
  }
  free(t->w);
  free(t->version);
  free(t);
}

const char *notif_templates_version(const notif_templates_t *t) {
  return t ? t->version : "";
}

bool notif_templates_has_locale(const notif_templates_t *t, const char *locale) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].locale, locale) == 0) return true;
  return false;
}

/* The first locale whose language (before '-') is locale's. */
static const notif_text_t *same_language(const notif_templates_t *t, const char *id,
                                         const char *locale) {
  size_t n = strcspn(locale, "-_");
  if (n == 0) return NULL;
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].id, id) == 0 && strncmp(t->v[i].locale, locale, n) == 0 &&
        (t->v[i].locale[n] == '\0' || t->v[i].locale[n] == '-'))
      return &t->v[i];
  return NULL;
}

const notif_text_t *notif_templates_find(const notif_templates_t *t, const char *id,
                                         const char *locale, const char *fallback) {
  const notif_text_t *x = locale && locale[0] ? exact(t, id, locale) : NULL;
  if (!x && locale && locale[0]) x = same_language(t, id, locale);
  if (!x) x = exact(t, id, fallback);
  return x;
}

const char *notif_templates_word(const notif_templates_t *t, const char *key, const char *locale) {
  const word_t *x = word_exact(t, key, locale);
  size_t n = strcspn(locale, "-_");
  for (size_t i = 0; !x && n && i < t->nw; i++)
    if (strcmp(t->w[i].key, key) == 0 && strncmp(t->w[i].locale, locale, n) == 0 &&
        (t->w[i].locale[n] == '\0' || t->w[i].locale[n] == '-'))
      x = &t->w[i];
  return x ? x->value : NULL;
}

/* ---- rendering */

static void put_value(as_buf_t *out, const char *v, notif_escape_t esc) {
  for (; *v; v++) {
    unsigned char c = (unsigned char)*v;
    if (esc == NOTIF_ESC_HTML && strchr("&<>\"'", c)) {
      static const char *const ent[] = {"&amp;", "&lt;", "&gt;", "&quot;", "&#39;"};
      as_buf_puts(out, ent[strchr("&<>\"'", c) - "&<>\"'"]);
    } else if (c < 0x20 && c != '\n') {
      as_buf_append(out, " ", 1);
    } else {
      as_buf_append(out, v, 1);
    }
  }
}

static const char *param(const notif_param_t *p, size_t np, const char *name, size_t n) {
  for (size_t i = 0; i < np; i++)
    if (strlen(p[i].name) == n && memcmp(p[i].name, name, n) == 0) return p[i].value;
  return "";
}

void notif_render(as_buf_t *out, const char *text, const notif_param_t *p, size_t np,
                  notif_escape_t esc, size_t max) {
  size_t start = out->len;
  for (const char *s = text; *s; s++) {
    if ((*s == '{' && s[1] == '{') || (*s == '}' && s[1] == '}')) {
      as_buf_append(out, s++, 1);
    } else if (*s == '{' && strchr(s, '}')) {
      const char *e = strchr(s, '}');
      put_value(out, param(p, np, s + 1, (size_t)(e - s - 1)), esc);
      s = e;
    } else {
      as_buf_append(out, s, 1);
    }
  }
  if (max && as_buf_ok(out) && out->len - start > max) {
    /* cut on a character boundary: drop continuation bytes at the cut */
    size_t keep = max;
    while (keep > 0 && ((unsigned char)out->data[start + keep] & 0xC0) == 0x80) keep--;
    out->len = start + keep;
    out->data[out->len] = '\0';
  }
}

typedef struct currency {
  const char *code, *symbol;
  int minor;
} currency_t;

/* ISO 4217 minor units of the currencies the fleet sells in; the others
 * print their code and two decimals. */
static const currency_t currencies[] = {
    {"CNY", "¥", 2},    {"USD", "$", 2},  {"EUR", "€", 2},   {"GBP", "£", 2},
    {"HKD", "HK$", 2},  {"JPY", "¥", 0},  {"KRW", "₩", 0},   {"KWD", "KWD ", 3},
    {"BHD", "BHD ", 3}, {"SGD", "S$", 2}, {"TWD", "NT$", 2},
};

size_t notif_amount(char *out, size_t len, int64_t minor, const char *currency) {
  const currency_t *c = NULL;
  for (size_t i = 0; i < sizeof currencies / sizeof *currencies; i++)
    if (strcmp(currencies[i].code, currency) == 0) c = &currencies[i];
  int digits = c ? c->minor : 2;
  uint64_t mag = minor < 0 ? (uint64_t)0 - (uint64_t)minor : (uint64_t)minor, unit = 1;
  for (int i = 0; i < digits; i++) unit *= 10;
  char sym[16];
  snprintf(sym, sizeof sym, "%s", c ? c->symbol : currency);
  if (!c) snprintf(sym, sizeof sym, "%.3s ", currency);
  int n = digits
              ? snprintf(out, len, "%s%s%llu.%0*llu", minor < 0 ? "-" : "", sym,
                         (unsigned long long)(mag / unit), digits, (unsigned long long)(mag % unit))
              : snprintf(out, len, "%s%s%llu", minor < 0 ? "-" : "", sym, (unsigned long long)mag);
  if (n < 0) return 0;
  return (size_t)n < len ? (size_t)n : (len ? len - 1 : 0);
}
