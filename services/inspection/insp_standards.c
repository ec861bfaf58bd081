/* insp_standards: the inspection worker's quality standards, read from a
 * small INI-like text file (README "Inspection standards") into an
 * immutable insp_standards_t, and the judgment of item results against a
 * category's checklist. Nothing here is lenient: a file is refused whole
 * with "line N: what is wrong" so the worker keeps the standards it had.
 * A category inherits from [category default] what it does not say
 * (inspectable, auto-pass, grades), never its checklist. */
#include "insp_standards.h"
#include "as_docfile.h"

#include "as_enum.h"
#include "as_err.h"
#include "as_money.h"
#include "as_utf8.h"
#include "proto/common.pb-c.h"
#include "proto/inspection.pb-c.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char insp_standards_default[] =
    "# aftersales inspection standards: the built-in default.\n"
    "# item.CODE = defect|minor SEVERITY | zh-CN description | en description\n"
    "# grade.X = DISPOSITION [resellable]; dispositions: restock refurbish\n"
    "# return_to_supplier destroy. Reasons are the proto's Reason names.\n"
    "version = builtin-1\n"
    "# A confirmed defect of this severity or more is grade D (else C).\n"
    "severe_from = 4\n"
    "# The coupon granted with every compensation, per currency (minor units).\n"
    "coupon = CNY:2000 USD:300 EUR:300 GBP:300 JPY:50000\n"
    "demand = 立即停止该批次发货并在 7 日内提交整改报告 / stop shipping the lot and file a "
    "rectification report within 7 days\n"
    "\n"
    "[category default]\n"
    "inspectable = yes\n"
    "# Change-of-mind returns the warehouse received sealed pass unseen.\n"
    "auto_pass_reasons = CHANGED_MIND\n"
    "auto_pass_condition = sealed\n"
    "grade.A = restock resellable\n"
    "grade.B = refurbish resellable\n"
    "grade.C = return_to_supplier\n"
    "grade.D = destroy\n"
    "item.intact = defect 3 | 商品完好无损 | item intact, no damage\n"
    "item.as_described = defect 3 | 与描述一致 | matches the description\n"
    "item.parts_complete = defect 2 | 配件齐全 | all parts present\n"
    "item.packaging = minor 1 | 包装完好 | packaging intact\n"
    "\n"
    "[category electronics]\n"
    "item.powers_on = defect 5 | 可正常开机 | powers on\n"
    "item.performance = defect 4 | 性能参数符合规格 | performance parameters within spec\n"
    "item.no_scratches = minor 2 | 无明显划痕 | no visible scratches\n"
    "item.accessories = defect 2 | 配件齐全 | accessories complete\n"
    "\n"
    "[category apparel]\n"
    "item.colourfast = defect 3 | 不褪色 | colourfast\n"
    "item.seams_intact = defect 3 | 缝线完好 | seams intact\n"
    "item.size_label = defect 2 | 尺码标与实物一致 | size label matches\n"
    "item.tags_attached = minor 1 | 吊牌齐全 | tags attached\n"
    "\n"
    "# Judged on the buyer's photos only: goods are not sent back.\n"
    "[category fresh_produce]\n"
    "inspectable = no\n"
    "auto_pass_reasons =\n"
    "grade.A = destroy\n"
    "grade.B = destroy\n"
    "grade.C = destroy\n"
    "item.fresh = defect 3 | 新鲜无腐烂 | fresh, not spoiled\n"
    "item.weight = defect 2 | 重量足秤 | weight as sold\n";

enum { MAX_CATS = 64, MAX_CUR = 16, MAX_TEXT = 255 };
enum { S_INSPECTABLE = 1, S_AUTO_REASONS = 2, S_AUTO_COND = 4, S_GRADE0 = 8 /* <<grade */ };

struct insp_standards {
  char version[INSP_NAME_MAX + 1];
  int severe_from;
  char *demand;
  size_t ncur;
  struct {
    char currency[4];
    int64_t minor;
  } coupon[MAX_CUR];
  insp_category_t *cat; /* cat[0] is default */
  size_t n;
  bool saw_severe, saw_coupon;
};

typedef struct {
  insp_standards_t *s;
  insp_category_t *cur; /* NULL before the first section */
  int line;
  char *err;
  size_t errlen;
} parser_t;

static int fail(parser_t *ps, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *ps, const char *fmt, ...) {
  char msg[384];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  as_err_set(ps->err, ps->errlen, "line %d: %s", ps->line, msg);
  return -1;
}

static char *trim(char *s) {
  while (*s == ' ' || *s == '\t') s++;
  char *end = s + strlen(s);
  while (end > s && (end[-1] == ' ' || end[-1] == '\t')) *--end = '\0';
  return s;
}

/* [a-z0-9_], 1..max characters: item codes and category names. */
static bool ident_ok(const char *s, size_t max) {
  size_t n = strlen(s);
  if (n == 0 || n > max) return false;
  for (; *s; s++)
    if (!((*s >= 'a' && *s <= 'z') || (*s >= '0' && *s <= '9') || *s == '_')) return false;
  return true;
}

static bool printable(const char *s) {
  for (; *s; s++)
    if (*s < 0x20 || *s > 0x7e) return false;
  return true;
}

static const char *const DISPOSITIONS[] = {NULL, "restock", "refurbish", "return_to_supplier",
                                           "destroy"};

/* ---- file-wide keys */

static int set_version(parser_t *ps, const char *v) {
  if (ps->s->version[0]) return fail(ps, "duplicate key \"version\"");
  if (!*v || strlen(v) > INSP_NAME_MAX || !printable(v))
    return fail(ps, "version must be 1 to %d printable ASCII characters", INSP_NAME_MAX);
  memcpy(ps->s->version, v, strlen(v) + 1);
  return 0;
}

static int set_severe(parser_t *ps, const char *v) {
  if (ps->s->saw_severe) return fail(ps, "duplicate key \"severe_from\"");
  if (strlen(v) != 1 || v[0] < '1' || v[0] > '5')
    return fail(ps, "severe_from must be an integer from 1 to 5, not \"%s\"", v);
  ps->s->severe_from = v[0] - '0';
  ps->s->saw_severe = true;
  return 0;
}

/* "CNY:2000 USD:300": ISO 4217 code, colon, minor units > 0. */
static int set_coupon(parser_t *ps, char *v) {
  insp_standards_t *s = ps->s;
  char *save = NULL;
  if (s->saw_coupon) return fail(ps, "duplicate key \"coupon\"");
  s->saw_coupon = true;
  for (char *tok = strtok_r(v, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
    char code[4] = "";
    int64_t minor = 0;
    bool shaped = strlen(tok) > 4 && tok[3] == ':';
    const char *d = shaped ? tok + 4 : ""; /* a shorter token has no amount to read */
    if (shaped) memcpy(code, tok, 3);
    bool digits = *d != '\0' && strlen(d) <= 15;
    for (const char *c = d; digits && *c; c++) digits = *c >= '0' && *c <= '9';
    if (digits) minor = strtoll(d, NULL, 10);
    if (!as_money_currency_ok(code) || !digits || minor <= 0)
      return fail(ps, "coupon: \"%s\" is not CUR:amount (3 upper-case letters, an integer > 0)",
                  tok);
    for (size_t i = 0; i < s->ncur; i++)
      if (strcmp(s->coupon[i].currency, code) == 0)
        return fail(ps, "coupon: currency %s is listed twice", code);
    if (s->ncur == MAX_CUR) return fail(ps, "coupon: more than %d currencies", MAX_CUR);
    memcpy(s->coupon[s->ncur].currency, code, 4);
    s->coupon[s->ncur++].minor = minor;
  }
  if (s->ncur == 0) return fail(ps, "coupon needs at least one CUR:amount");
  return 0;
}

static int set_demand(parser_t *ps, const char *v) {
  if (ps->s->demand) return fail(ps, "duplicate key \"demand\"");
  if (!*v || strlen(v) > 1000) return fail(ps, "demand must be 1 to 1000 bytes");
  ps->s->demand = strdup(v);
  return ps->s->demand ? 0 : fail(ps, "out of memory");
}

static int top_key(parser_t *ps, const char *k, char *v) {
  if (strcmp(k, "version") == 0) return set_version(ps, v);
  if (strcmp(k, "severe_from") == 0) return set_severe(ps, v);
  if (strcmp(k, "coupon") == 0) return set_coupon(ps, v);
  return set_demand(ps, v);
}

/* ---- category keys */

static int once(parser_t *ps, insp_category_t *c, unsigned bit, const char *k) {
  if (c->set & bit) return fail(ps, "duplicate key \"%s\"", k);
  c->set |= bit;
  return 0;
}

static int set_inspectable(parser_t *ps, insp_category_t *c, const char *v) {
  if (once(ps, c, S_INSPECTABLE, "inspectable") < 0) return -1;
  if (strcmp(v, "yes") && strcmp(v, "no"))
    return fail(ps, "inspectable must be yes or no, not \"%s\"", v);
  c->inspectable = strcmp(v, "yes") == 0;
  return 0;
}

static int set_reasons(parser_t *ps, insp_category_t *c, char *v) {
  char *save = NULL;
  if (once(ps, c, S_AUTO_REASONS, "auto_pass_reasons") < 0) return -1;
  c->auto_pass_reasons = 0;
  for (char *tok = strtok_r(v, " \t", &save); tok; tok = strtok_r(NULL, " \t", &save)) {
    int val;
    if (as_enum_value(&aftersales__v1__reason__descriptor, tok, strlen(tok), false, &val) != 0 ||
        val <= 0 || val >= 32)
      return fail(ps, "auto_pass_reasons: unknown reason \"%s\"", tok);
    if (c->auto_pass_reasons & (1u << val))
      return fail(ps, "auto_pass_reasons: \"%s\" is listed twice", tok);
    c->auto_pass_reasons |= 1u << val;
  }
  return 0;
}

static int set_condition(parser_t *ps, insp_category_t *c, const char *v) {
  if (once(ps, c, S_AUTO_COND, "auto_pass_condition") < 0) return -1;
  if (!ident_ok(v, INSP_NAME_MAX))
    return fail(ps, "auto_pass_condition must be 1 to %d of [a-z0-9_]", INSP_NAME_MAX);
  memcpy(c->auto_pass_condition, v, strlen(v) + 1);
  return 0;
}

/* "grade.B = refurbish resellable" */
static int set_grade(parser_t *ps, insp_category_t *c, const char *k, char *v) {
  const char *g = k + 6;
  if (strlen(g) != 1 || g[0] < 'A' || g[0] > 'D')
    return fail(ps, "unknown grade \"%s\" (A, B, C or D)", g);
  int grade = g[0] - 'A' + 1;
  if (once(ps, c, S_GRADE0 << grade, k) < 0) return -1;
  char *save = NULL, *disp = strtok_r(v, " \t", &save), *flag = strtok_r(NULL, " \t", &save);
  int d = 0;
  for (int i = 1; disp && i < 5; i++)
    if (strcmp(disp, DISPOSITIONS[i]) == 0) d = i;
  if (!d)
    return fail(ps,
                "%s: unknown disposition \"%s\" (restock, refurbish, return_to_supplier, destroy)",
                k, disp ? disp : "");
  if ((flag && strcmp(flag, "resellable")) || strtok_r(NULL, " \t", &save))
    return fail(ps, "%s: only \"resellable\" may follow the disposition", k);
  c->grade[grade] = (insp_grade_rule_t){d, flag != NULL};
  return 0;
}

/* "item.colourfast = defect 3 | 不褪色 | colourfast" */
static int set_item(parser_t *ps, insp_category_t *c, const char *k, char *v) {
  const char *code = k + 5;
  if (!ident_ok(code, INSP_CODE_MAX))
    return fail(ps, "item code \"%s\" must be 1 to %d of [a-z0-9_]", code, INSP_CODE_MAX);
  if (insp_category_item(c, code)) return fail(ps, "duplicate item \"%s\"", code);
  if (c->nitems == INSP_ITEMS_MAX) return fail(ps, "more than %d items", INSP_ITEMS_MAX);
  char *zh = strchr(v, '|'), *en = zh ? strchr(zh + 1, '|') : NULL;
  if (!zh || !en || strchr(en + 1, '|'))
    return fail(ps, "%s must be \"defect|minor SEVERITY | zh-CN text | en text\"", k);
  *zh++ = '\0', *en++ = '\0';
  char *save = NULL, *kind = strtok_r(v, " \t", &save), *sev = strtok_r(NULL, " \t", &save);
  if (!kind || (strcmp(kind, "defect") && strcmp(kind, "minor")))
    return fail(ps, "%s: kind must be defect or minor, not \"%s\"", k, kind ? kind : "");
  if (!sev || strlen(sev) != 1 || sev[0] < '1' || sev[0] > '5' || strtok_r(NULL, " \t", &save))
    return fail(ps, "%s: severity must be an integer from 1 to 5", k);
  zh = trim(zh), en = trim(en);
  if (!*zh || !*en || strlen(zh) > MAX_TEXT || strlen(en) > MAX_TEXT)
    return fail(ps, "%s: the zh-CN and en descriptions must be 1 to %d bytes", k, MAX_TEXT);
  insp_item_t *it = &c->items[c->nitems];
  memcpy(it->code, code, strlen(code) + 1);
  it->defect = kind[0] == 'd';
  it->severity = sev[0] - '0';
  it->zh = strdup(zh);
  it->en = strdup(en);
  c->nitems++; /* counted before the check: insp_standards_free frees what it holds */
  return it->zh && it->en ? 0 : fail(ps, "out of memory");
}

static int cat_key(parser_t *ps, const char *k, char *v) {
  insp_category_t *c = ps->cur;
  if (strcmp(k, "inspectable") == 0) return set_inspectable(ps, c, v);
  if (strcmp(k, "auto_pass_reasons") == 0) return set_reasons(ps, c, v);
  if (strcmp(k, "auto_pass_condition") == 0) return set_condition(ps, c, v);
  if (strncmp(k, "grade.", 6) == 0) return set_grade(ps, c, k, v);
  if (strncmp(k, "item.", 5) == 0) return set_item(ps, c, k, v);
  return fail(ps, "unknown key \"%s\"", k);
}

/* ---- sections and lines */

static int section(parser_t *ps, char *s) {
  size_t len = strlen(s);
  if (len < 2 || s[len - 1] != ']') return fail(ps, "section header must end with ]");
  s[len - 1] = '\0';
  char *save = NULL, *kind = strtok_r(s + 1, " \t", &save), *name = strtok_r(NULL, " \t", &save);
  if (!kind || strcmp(kind, "category") != 0)
    return fail(ps, "unknown section [%s] (only [category NAME])", kind ? kind : "");
  if (!name || strtok_r(NULL, " \t", &save) || !ident_ok(name, INSP_NAME_MAX))
    return fail(ps, "[category] needs one name of 1 to %d of [a-z0-9_]", INSP_NAME_MAX);
  insp_standards_t *st = ps->s;
  for (size_t i = 0; i < st->n; i++)
    if (strcmp(st->cat[i].name, name) == 0)
      return fail(ps, "duplicate section [category %s] (first at line %d)", name, st->cat[i].line);
  if (st->n == MAX_CATS) return fail(ps, "more than %d categories", MAX_CATS);
  insp_category_t *c = &st->cat[st->n++];
  memset(c, 0, sizeof *c);
  memcpy(c->name, name, strlen(name) + 1);
  c->line = ps->line;
  c->inspectable = true;
  ps->cur = c;
  return 0;
}

static int line(parser_t *ps, char *raw) {
  size_t len = strlen(raw);
  if (len && raw[len - 1] == '\r') raw[len - 1] = '\0';
  for (const char *c = raw; *c; c++)
    if ((*c >= 0 && *c < 0x20 && *c != '\t') || *c == 0x7f)
      return fail(ps, "control character 0x%02x", (unsigned)*c);
  if (!as_utf8_valid(raw, strlen(raw))) return fail(ps, "invalid UTF-8");
  char *s = trim(raw);
  if (!*s || *s == '#') return 0;
  if (*s == '[') return section(ps, s);
  char *eq = strchr(s, '=');
  if (!eq) return fail(ps, "expected \"key = value\", a [section] or a # comment");
  *eq = '\0';
  char *k = trim(s), *v = trim(eq + 1);
  if (!*k) return fail(ps, "missing key before =");
  bool top = !strcmp(k, "version") || !strcmp(k, "severe_from") || !strcmp(k, "coupon") ||
             !strcmp(k, "demand");
  if (top && ps->cur) return fail(ps, "key \"%s\" belongs before the first section", k);
  if (top) return top_key(ps, k, v);
  if (!ps->cur) return fail(ps, "key \"%s\" outside a section", k);
  return cat_key(ps, k, v);
}

/* ---- whole-file checks: the default is complete, the others inherit */

static int finish(parser_t *ps) {
  insp_standards_t *s = ps->s;
  const char *miss = !s->version[0]   ? "version"
                     : !s->saw_severe ? "severe_from"
                     : !s->saw_coupon ? "coupon"
                     : !s->demand     ? "demand"
                                      : NULL;
  if (miss) return as_err_set(ps->err, ps->errlen, "missing key \"%s\" (file-wide)", miss), -1;
  size_t d = 0;
  while (d < s->n && strcmp(s->cat[d].name, "default") != 0) d++;
  if (d == s->n) return as_err_set(ps->err, ps->errlen, "missing [category default]"), -1;
  insp_category_t tmp = s->cat[0];
  s->cat[0] = s->cat[d], s->cat[d] = tmp;
  const insp_category_t *def = &s->cat[0];
  for (int g = 1; g < INSP_GRADES; g++)
    if (!(def->set & (S_GRADE0 << g)))
      return as_err_set(ps->err, ps->errlen, "line %d: [category default]: missing grade.%c",
                        def->line, 'A' + g - 1),
             -1;
  for (size_t i = 0; i < s->n; i++) {
    insp_category_t *c = &s->cat[i];
    if (c->nitems == 0)
      return as_err_set(ps->err, ps->errlen, "line %d: [category %s] has no item.* checklist",
                        c->line, c->name),
             -1;
    if (i == 0) continue;
    if (!(c->set & S_INSPECTABLE)) c->inspectable = def->inspectable;
    if (!(c->set & S_AUTO_REASONS)) c->auto_pass_reasons = def->auto_pass_reasons;
    if (!(c->set & S_AUTO_COND))
      memcpy(c->auto_pass_condition, def->auto_pass_condition, sizeof c->auto_pass_condition);
    for (int g = 1; g < INSP_GRADES; g++)
      if (!(c->set & (S_GRADE0 << g))) c->grade[g] = def->grade[g];
  }
  for (size_t i = 0; i < s->n; i++) {
    const insp_category_t *c = &s->cat[i];
    if (c->auto_pass_reasons && !c->auto_pass_condition[0])
      return as_err_set(ps->err, ps->errlen,
                        "line %d: [category %s]: auto_pass_reasons without auto_pass_condition",
                        c->line, c->name),
             -1;
    if (c->auto_pass_reasons && !c->inspectable)
      return as_err_set(ps->err, ps->errlen,
                        "line %d: [category %s]: not inspectable, so nothing can auto-pass "
                        "(auto_pass_reasons =)",
                        c->line, c->name),
             -1;
  }
  return 0;
}

static int parse_lines(parser_t *ps, char *buf) {
  for (char *l = buf; l;) {
    char *nl = strchr(l, '\n');
    if (nl) *nl = '\0';
    ps->line++;
    if (line(ps, l) < 0) return -1;
    l = nl ? nl + 1 : NULL;
  }
  return 0;
}

insp_standards_t *insp_standards_parse(const char *text, size_t len, char *err, size_t errlen) {
  parser_t ps = {.err = err, .errlen = errlen};
  as_err_set(err, errlen, "%s", "");
  if (len > AS_DOCFILE_MAX) return as_err_set(err, errlen, "standards are more than 1 MiB"), NULL;
  int nul_line = as_docfile_nul_line(text, len);
  if (nul_line) return as_err_set(err, errlen, "line %d: NUL byte", nul_line), NULL;
  char *buf = malloc(len + 1);
  ps.s = calloc(1, sizeof *ps.s);
  if (ps.s) ps.s->cat = calloc(MAX_CATS, sizeof *ps.s->cat);
  if (!buf || !ps.s || !ps.s->cat) {
    as_err_set(err, errlen, "out of memory");
    goto failed;
  }
  memcpy(buf, text, len);
  buf[len] = '\0';
  if (parse_lines(&ps, buf) < 0 || finish(&ps) < 0) goto failed;
  free(buf);
  return ps.s;
failed:
  free(buf);
  insp_standards_free(ps.s);
  return NULL;
}

static void *parse_doc(const char *text, size_t len, char *err, size_t errlen) {
  return insp_standards_parse(text, len, err, errlen);
}

insp_standards_t *insp_standards_load(const char *path, char *err, size_t errlen) {
  return as_docfile_load(path, parse_doc, err, errlen);
}

void insp_standards_free(insp_standards_t *s) {
  if (!s) return;
  for (size_t i = 0; s->cat && i < s->n; i++)
    for (size_t j = 0; j < s->cat[i].nitems; j++) {
      free(s->cat[i].items[j].zh);
      free(s->cat[i].items[j].en);
    }
  free(s->cat);
  free(s->demand);
  free(s);
}

const char *insp_standards_version(const insp_standards_t *s) {
  return s->version;
}

const char *insp_standards_demand(const insp_standards_t *s) {
  return s->demand;
}

bool insp_standards_coupon(const insp_standards_t *s, const char *currency, int64_t *minor) {
  *minor = 0;
  for (size_t i = 0; currency && i < s->ncur; i++)
    if (strcmp(s->coupon[i].currency, currency) == 0) return (*minor = s->coupon[i].minor), true;
  return false;
}

const insp_category_t *insp_standards_category(const insp_standards_t *s, const char *name) {
  for (size_t i = 1; name && i < s->n; i++)
    if (strcmp(s->cat[i].name, name) == 0) return &s->cat[i];
  return &s->cat[0];
}

const insp_item_t *insp_category_item(const insp_category_t *c, const char *code) {
  for (size_t i = 0; code && i < c->nitems; i++)
    if (strcmp(c->items[i].code, code) == 0) return &c->items[i];
  return NULL;
}

bool insp_category_auto_pass(const insp_category_t *c, int reason, const char *condition) {
  return c->inspectable && reason > 0 && reason < 32 && (c->auto_pass_reasons & (1u << reason)) &&
         condition && c->auto_pass_condition[0] && strcmp(condition, c->auto_pass_condition) == 0;
}

/* ---- judging */

/* Every checklist item once: idx[i] is r's index for item i. */
static const char *match_items(const insp_category_t *c, const insp_result_t *r, size_t n, int *idx,
                               char *why, size_t whylen) {
  for (size_t i = 0; i < c->nitems; i++) idx[i] = -1;
  for (size_t k = 0; k < n; k++) {
    const insp_item_t *it = insp_category_item(c, r[k].code);
    if (!it) {
      as_err_set(why, whylen, "item_not_in_standard: \"%.48s\" is not an item of [category %s]",
                 r[k].code ? r[k].code : "", c->name);
      return why;
    }
    size_t i = (size_t)(it - c->items);
    if (idx[i] >= 0) {
      as_err_set(why, whylen, "item_repeated: \"%s\" judged twice", it->code);
      return why;
    }
    idx[i] = (int)k;
  }
  for (size_t i = 0; i < c->nitems; i++)
    if (idx[i] < 0) {
      as_err_set(why, whylen, "items_incomplete: \"%s\" of [category %s] not judged",
                 c->items[i].code, c->name);
      return why;
    }
  return NULL;
}

const char *insp_judge(const insp_standards_t *s, const insp_category_t *c, const insp_result_t *r,
                       size_t n, insp_judgment_t *j, char *why, size_t whylen) {
  int idx[INSP_ITEMS_MAX];
  memset(j, 0, sizeof *j);
  const char *bad = match_items(c, r, n, idx, why, whylen);
  if (bad) return bad;
  bool minor = false;
  for (size_t i = 0; i < c->nitems; i++) {
    const insp_item_t *it = &c->items[i];
    if (r[idx[i]].passed) continue;
    j->failed[j->nfailed++] = it->code;
    if (it->severity > j->severity) j->severity = it->severity;
    if (!it->defect) {
      minor = true;
      continue;
    }
    if (!j->defect_confirmed || it->severity > insp_category_item(c, j->defect_code)->severity)
      j->defect_code = it->code;
    j->defect_confirmed = true;
  }
  if (j->defect_confirmed) {
    j->severity = insp_category_item(c, j->defect_code)->severity;
    j->grade = j->severity >= s->severe_from ? AFTERSALES__V1__QC_GRADE__QC_GRADE_D
                                             : AFTERSALES__V1__QC_GRADE__QC_GRADE_C;
  } else {
    j->grade = minor ? AFTERSALES__V1__QC_GRADE__QC_GRADE_B : AFTERSALES__V1__QC_GRADE__QC_GRADE_A;
  }
  j->disposition = c->grade[j->grade].disposition;
  j->resellable = c->grade[j->grade].resellable;
  return NULL;
}
