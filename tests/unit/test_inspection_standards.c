/* Unit tests for the inspection standards: the built-in standards parse
 * with each category's checklist; every refusal names its line; a category
 * inherits the default's grades and rules but not its checklist; the
 * judgment at every grade edge (no fault, minor only, defect below and at
 * severe_from), the defect code of the most severe item, and the refusal of
 * unknown, repeated and missing items. */
#include "../../services/inspection/insp_standards.h"
#include "as_test.h"

#include "proto/common.pb-c.h"
#include "proto/inspection.pb-c.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define G(x) AFTERSALES__V1__QC_GRADE__QC_GRADE_##x
#define D(x) AFTERSALES__V1__DISPOSITION__DISPOSITION_##x
#define RS(x) AFTERSALES__V1__REASON__REASON_##x

/* The smallest valid file (5 lines before the tail a test appends). */
#define HEAD "version = t\nsevere_from = 4\ncoupon = CNY:100\ndemand = fix it\n"
#define DEF                                                                           \
  "[category default]\ngrade.A = restock resellable\ngrade.B = refurbish\ngrade.C = " \
  "return_to_supplier\ngrade.D = destroy\nitem.ok = defect 3 | 好 | ok\n"

static insp_standards_t *parse_ok(const char *text) {
  char err[512] = "";
  insp_standards_t *s = insp_standards_parse(text, strlen(text), err, sizeof err);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK(s != NULL);
  return s;
}

static void refused(const char *text, const char *want) {
  char err[512] = "";
  insp_standards_t *s = insp_standards_parse(text, strlen(text), err, sizeof err);
  if (s != NULL || strstr(err, want) == NULL) {
    fprintf(stderr, "# standards:\n%s\n", text);
    insp_standards_free(s);
    AS_CHECK_STR_EQ(err, want);
  }
}

AS_TEST(builtin_parses_with_every_category) {
  insp_standards_t *s = parse_ok(insp_standards_default);
  AS_CHECK_STR_EQ(insp_standards_version(s), "builtin-1");
  const insp_category_t *e = insp_standards_category(s, "electronics");
  AS_CHECK_STR_EQ(e->name, "electronics");
  AS_CHECK_INT_EQ(e->nitems, 4);
  AS_CHECK_STR_EQ(e->items[0].code, "powers_on");
  AS_CHECK(e->items[0].defect);
  AS_CHECK_INT_EQ(e->items[0].severity, 5);
  AS_CHECK_STR_EQ(e->items[0].zh, "可正常开机");
  AS_CHECK_STR_EQ(e->items[0].en, "powers on");
  AS_CHECK(insp_category_item(e, "performance") != NULL);
  AS_CHECK(!insp_category_item(e, "no_scratches")->defect);
  const insp_category_t *a = insp_standards_category(s, "apparel");
  AS_CHECK_STR_EQ(a->name, "apparel");
  AS_CHECK(insp_category_item(a, "colourfast") != NULL);
  AS_CHECK(insp_category_item(a, "seams_intact") != NULL);
  AS_CHECK(insp_category_item(a, "size_label") != NULL);
  AS_CHECK(insp_category_item(a, "powers_on") == NULL); /* checklists are not inherited */
  const insp_category_t *f = insp_standards_category(s, "fresh_produce");
  AS_CHECK(!f->inspectable);
  AS_CHECK(a->inspectable && e->inspectable);
  /* an unknown category gets the default's */
  AS_CHECK_STR_EQ(insp_standards_category(s, "furniture")->name, "default");
  AS_CHECK_STR_EQ(insp_standards_category(s, NULL)->name, "default");
  int64_t minor;
  AS_CHECK(insp_standards_coupon(s, "CNY", &minor));
  AS_CHECK_INT_EQ(minor, 2000);
  AS_CHECK(!insp_standards_coupon(s, "CHF", &minor));
  AS_CHECK_INT_EQ(minor, 0);
  AS_CHECK(strstr(insp_standards_demand(s), "rectification") != NULL);
  insp_standards_free(s);
}

AS_TEST(auto_pass_rule_inherited_and_not_for_evidence_only) {
  insp_standards_t *s = parse_ok(insp_standards_default);
  const insp_category_t *a = insp_standards_category(s, "apparel");
  AS_CHECK(insp_category_auto_pass(a, RS(CHANGED_MIND), "sealed"));
  AS_CHECK(!insp_category_auto_pass(a, RS(CHANGED_MIND), "opened"));
  AS_CHECK(!insp_category_auto_pass(a, RS(CHANGED_MIND), ""));
  AS_CHECK(!insp_category_auto_pass(a, RS(QUALITY_DEFECT), "sealed"));
  AS_CHECK(!insp_category_auto_pass(insp_standards_category(s, "fresh_produce"), RS(CHANGED_MIND),
                                    "sealed"));
  insp_standards_free(s);
}

AS_TEST(category_inherits_grades_overrides_some) {
  insp_standards_t *s =
      parse_ok(HEAD DEF "[category glass]\ngrade.B = destroy\nitem.x = minor 1 | 甲 | x\n");
  const insp_category_t *g = insp_standards_category(s, "glass");
  AS_CHECK_INT_EQ(g->grade[G(A)].disposition, D(RESTOCK));
  AS_CHECK(g->grade[G(A)].resellable);
  AS_CHECK_INT_EQ(g->grade[G(B)].disposition, D(DESTROY));
  AS_CHECK(!g->grade[G(B)].resellable);
  AS_CHECK_INT_EQ(g->grade[G(C)].disposition, D(RETURN_TO_SUPPLIER));
  insp_standards_free(s);
}

static const struct {
  const char *text, *want;
} REFUSALS[] = {
    {"severe_from = 4\ncoupon = CNY:1\ndemand = d\n" DEF, "missing key \"version\""},
    {"version = t\ncoupon = CNY:1\ndemand = d\n" DEF, "missing key \"severe_from\""},
    {"version = t\nsevere_from = 4\ndemand = d\n" DEF, "missing key \"coupon\""},
    {"version = t\nsevere_from = 4\ncoupon = CNY:1\n" DEF, "missing key \"demand\""},
    {HEAD, "missing [category default]"},
    {HEAD "version = u\n" DEF, "line 5: duplicate key \"version\""},
    {HEAD "severe_from = 6\n" DEF, "line 5: duplicate key \"severe_from\""},
    {"version = t\nsevere_from = 0\n", "line 2: severe_from must be an integer from 1 to 5"},
    {"version = t\ncoupon = CNY:0\n", "line 2: coupon: \"CNY:0\" is not CUR:amount"},
    {"version = t\ncoupon = cny:5\n", "line 2: coupon: \"cny:5\" is not CUR:amount"},
    {"version = t\ncoupon = C\n", "line 2: coupon: \"C\" is not CUR:amount"},
    {"version = t\ncoupon = CNY:\n", "line 2: coupon: \"CNY:\" is not CUR:amount"},
    {"version = t\ncoupon = CNY:12x\n", "line 2: coupon: \"CNY:12x\" is not CUR:amount"},
    {"version = t\ncoupon = CNY:5 CNY:6\n", "line 2: coupon: currency CNY is listed twice"},
    {"version = t\ncoupon =\n", "line 2: coupon needs at least one CUR:amount"},
    {"version = t\ndemand =\n", "line 2: demand must be 1 to 1000 bytes"},
    {"version = t\nitem.x = defect 1 | a | b\n", "line 2: key \"item.x\" outside a section"},
    {HEAD DEF "version = u\n", "line 11: key \"version\" belongs before the first section"},
    {HEAD DEF "colorfast = yes\n", "line 11: unknown key \"colorfast\""},
    {HEAD DEF "[region x]\n", "line 11: unknown section [region]"},
    {HEAD DEF "[category]\n", "line 11: [category] needs one name"},
    {HEAD DEF "[category Bad-Name]\n", "line 11: [category] needs one name"},
    {HEAD DEF "[category default]\n",
     "line 11: duplicate section [category default] (first at "
     "line 5)"},
    {HEAD DEF "[category x\n", "line 11: section header must end with ]"},
    {HEAD DEF "just words\n", "line 11: expected \"key = value\""},
    {HEAD DEF "= 3\n", "line 11: missing key before ="},
    {HEAD DEF "inspectable = maybe\n", "line 11: inspectable must be yes or no"},
    {HEAD DEF "inspectable = no\ninspectable = no\n", "line 12: duplicate key \"inspectable\""},
    {HEAD DEF "auto_pass_reasons = BORED\n", "line 11: auto_pass_reasons: unknown reason"},
    {HEAD DEF "auto_pass_reasons = CHANGED_MIND CHANGED_MIND\n",
     "line 11: auto_pass_reasons: \"CHANGED_MIND\" is listed twice"},
    {HEAD DEF "auto_pass_condition = Sealed!\n", "line 11: auto_pass_condition must be"},
    {HEAD DEF "auto_pass_reasons = CHANGED_MIND\n",
     "line 5: [category default]: auto_pass_reasons without auto_pass_condition"},
    {HEAD DEF "inspectable = no\nauto_pass_reasons = CHANGED_MIND\nauto_pass_condition = s\n",
     "line 5: [category default]: not inspectable, so nothing can auto-pass"},
    {HEAD DEF "grade.E = destroy\n", "line 11: unknown grade \"E\""},
    {HEAD DEF "[category g]\ngrade.A = burn\n", "line 12: grade.A: unknown disposition \"burn\""},
    {HEAD DEF "[category g]\ngrade.A = restock sellable\n",
     "line 12: grade.A: only \"resellable\" may follow the disposition"},
    {HEAD DEF "grade.A = restock\n", "line 11: duplicate key \"grade.A\""},
    {HEAD "[category default]\ngrade.A = restock\ngrade.B = restock\ngrade.C = destroy\n"
          "item.ok = defect 3 | 好 | ok\n",
     "line 5: [category default]: missing grade.D"},
    {HEAD DEF "item.ok = defect 3 | 好 | ok\n", "line 11: duplicate item \"ok\""},
    {HEAD DEF "item.Bad = defect 3 | 好 | ok\n", "line 11: item code \"Bad\" must be"},
    {HEAD DEF "item.x = defect 3 | 好\n", "line 11: item.x must be \"defect|minor SEVERITY"},
    {HEAD DEF "item.x = defect 3 | 好 | ok | more\n", "line 11: item.x must be"},
    {HEAD DEF "item.x = fatal 3 | 好 | ok\n", "line 11: item.x: kind must be defect or minor"},
    {HEAD DEF "item.x = defect 6 | 好 | ok\n",
     "line 11: item.x: severity must be an integer "
     "from 1 to 5"},
    {HEAD DEF "item.x = defect 0 | 好 | ok\n", "line 11: item.x: severity must be"},
    {HEAD DEF "item.x = defect | 好 | ok\n", "line 11: item.x: severity must be"},
    {HEAD DEF "item.x = defect 2 |  | ok\n", "line 11: item.x: the zh-CN and en descriptions"},
    {HEAD DEF "[category empty]\ninspectable = no\n",
     "line 11: [category empty] has no item.* "
     "checklist"},
    {HEAD DEF "item.x = defect 2 | \x01 | ok\n", "line 11: control character 0x01"},
    {HEAD DEF "item.x = defect 2 | \xc3\x28 | ok\n", "line 11: invalid UTF-8"},
};

AS_TEST(every_refusal_names_its_line) {
  for (size_t i = 0; i < sizeof REFUSALS / sizeof REFUSALS[0]; i++)
    refused(REFUSALS[i].text, REFUSALS[i].want);
}

AS_TEST(nul_byte_refused_with_its_line) {
  const char text[] = "version = t\n\nx\0y\n";
  char err[256];
  AS_CHECK(insp_standards_parse(text, sizeof text - 1, err, sizeof err) == NULL);
  AS_CHECK_STR_EQ(err, "line 3: NUL byte");
}

AS_TEST(load_names_the_file_and_the_line) {
  char path[] = "/tmp/insp-standards-XXXXXX";
  int fd = mkstemp(path);
  AS_CHECK(fd >= 0);
  const char *text = HEAD DEF "bogus = 1\n";
  AS_CHECK_INT_EQ(write(fd, text, strlen(text)), (long long)strlen(text));
  close(fd);
  char err[512];
  AS_CHECK(insp_standards_load(path, err, sizeof err) == NULL);
  unlink(path);
  AS_CHECK(strstr(err, path) == err);
  AS_CHECK(strstr(err, "line 11: unknown key \"bogus\"") != NULL);
  AS_CHECK(insp_standards_load("/nonexistent/x", err, sizeof err) == NULL);
  AS_CHECK(strstr(err, "No such file") != NULL);
}

/* Judges the electronics checklist with the items of failed[] failed. */
static const char *judge_el(const insp_standards_t *s, const char *const *failed, size_t nf,
                            insp_judgment_t *j) {
  const insp_category_t *e = insp_standards_category(s, "electronics");
  insp_result_t r[4];
  for (size_t i = 0; i < e->nitems; i++) {
    r[i] = (insp_result_t){e->items[i].code, true};
    for (size_t k = 0; k < nf; k++)
      if (strcmp(failed[k], e->items[i].code) == 0) r[i].passed = false;
  }
  char why[200];
  return insp_judge(s, e, r, e->nitems, j, why, sizeof why);
}

AS_TEST(grades_at_every_edge) {
  insp_standards_t *s = parse_ok(insp_standards_default);
  insp_judgment_t j;
  /* nothing failed: A, restocked, resellable */
  AS_CHECK(judge_el(s, NULL, 0, &j) == NULL);
  AS_CHECK(!j.defect_confirmed);
  AS_CHECK_INT_EQ(j.grade, G(A));
  AS_CHECK_INT_EQ(j.disposition, D(RESTOCK));
  AS_CHECK(j.resellable);
  AS_CHECK_INT_EQ(j.nfailed, 0);
  /* a minor fault only: B, no defect */
  const char *scratch[] = {"no_scratches"};
  AS_CHECK(judge_el(s, scratch, 1, &j) == NULL);
  AS_CHECK(!j.defect_confirmed);
  AS_CHECK_INT_EQ(j.grade, G(B));
  AS_CHECK_INT_EQ(j.disposition, D(REFURBISH));
  AS_CHECK(j.resellable);
  AS_CHECK_INT_EQ(j.nfailed, 1);
  AS_CHECK_STR_EQ(j.failed[0], "no_scratches");
  /* a defect of severity 2 (below severe_from 4): C */
  const char *acc[] = {"accessories", "no_scratches"};
  AS_CHECK(judge_el(s, acc, 2, &j) == NULL);
  AS_CHECK(j.defect_confirmed);
  AS_CHECK_STR_EQ(j.defect_code, "accessories");
  AS_CHECK_INT_EQ(j.severity, 2);
  AS_CHECK_INT_EQ(j.grade, G(C));
  AS_CHECK_INT_EQ(j.disposition, D(RETURN_TO_SUPPLIER));
  AS_CHECK(!j.resellable);
  AS_CHECK_INT_EQ(j.nfailed, 2);
  /* exactly severe_from (4): D */
  const char *perf[] = {"accessories", "performance"};
  AS_CHECK(judge_el(s, perf, 2, &j) == NULL);
  AS_CHECK_STR_EQ(j.defect_code, "performance");
  AS_CHECK_INT_EQ(j.severity, 4);
  AS_CHECK_INT_EQ(j.grade, G(D));
  AS_CHECK_INT_EQ(j.disposition, D(DESTROY));
  AS_CHECK(!j.resellable);
  /* the most severe failed defect names the defect, whatever the order */
  const char *all[] = {"no_scratches", "accessories", "performance", "powers_on"};
  AS_CHECK(judge_el(s, all, 4, &j) == NULL);
  AS_CHECK_STR_EQ(j.defect_code, "powers_on");
  AS_CHECK_INT_EQ(j.severity, 5);
  AS_CHECK_INT_EQ(j.nfailed, 4);
  AS_CHECK_STR_EQ(j.failed[0], "powers_on"); /* checklist order */
  insp_standards_free(s);
}

AS_TEST(severe_from_moves_the_c_d_edge) {
  insp_standards_t *s = parse_ok("version = t\nsevere_from = 3\ncoupon = CNY:1\ndemand = d\n" DEF
                                 "item.a = defect 2 | 甲 | a\nitem.b = defect 3 | 乙 | b\n");
  const insp_category_t *c = insp_standards_category(s, "default");
  insp_result_t r[3] = {{"ok", true}, {"a", false}, {"b", true}};
  insp_judgment_t j;
  char why[200];
  AS_CHECK(insp_judge(s, c, r, 3, &j, why, sizeof why) == NULL);
  AS_CHECK_INT_EQ(j.grade, G(C));
  r[2].passed = false;
  AS_CHECK(insp_judge(s, c, r, 3, &j, why, sizeof why) == NULL);
  AS_CHECK_INT_EQ(j.grade, G(D));
  AS_CHECK_STR_EQ(j.defect_code, "b");
  insp_standards_free(s);
}

AS_TEST(items_refused_unknown_repeated_missing) {
  insp_standards_t *s = parse_ok(insp_standards_default);
  const insp_category_t *a = insp_standards_category(s, "apparel");
  insp_judgment_t j;
  char why[240];
  insp_result_t r[5] = {{"colourfast", true},
                        {"seams_intact", true},
                        {"size_label", true},
                        {"tags_attached", true},
                        {"powers_on", false}};
  const char *bad = insp_judge(s, a, r, 5, &j, why, sizeof why);
  AS_CHECK(bad != NULL);
  AS_CHECK(strstr(bad, "item_not_in_standard: \"powers_on\"") == bad);
  r[4] = (insp_result_t){"colourfast", false};
  bad = insp_judge(s, a, r, 5, &j, why, sizeof why);
  AS_CHECK(bad != NULL && strstr(bad, "item_repeated: \"colourfast\"") == bad);
  bad = insp_judge(s, a, r, 3, &j, why, sizeof why);
  AS_CHECK(bad != NULL && strstr(bad, "items_incomplete: \"tags_attached\"") == bad);
  AS_CHECK(insp_judge(s, a, r, 4, &j, why, sizeof why) == NULL);
  insp_standards_free(s);
}

AS_TEST(fresh_produce_judged_on_evidence) {
  insp_standards_t *s = parse_ok(insp_standards_default);
  const insp_category_t *f = insp_standards_category(s, "fresh_produce");
  insp_result_t r[2] = {{"fresh", false}, {"weight", true}};
  insp_judgment_t j;
  char why[200];
  AS_CHECK(insp_judge(s, f, r, 2, &j, why, sizeof why) == NULL);
  AS_CHECK(j.defect_confirmed);
  AS_CHECK_STR_EQ(j.defect_code, "fresh");
  AS_CHECK_INT_EQ(j.grade, G(C));
  AS_CHECK_INT_EQ(j.disposition, D(DESTROY));
  AS_CHECK(!j.resellable);
  insp_standards_free(s);
}

/* The README reproduces the built-in standards (between its standards
 * markers): the tests run from the repository root. */
AS_TEST(readme_reproduces_the_builtin_standards) {
  FILE *f = fopen("README.md", "rb");
  AS_CHECK(f != NULL);
  static char buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  const char *begin = strstr(buf, "<!-- standards:begin -->\n```\n");
  AS_CHECK(begin != NULL);
  begin += strlen("<!-- standards:begin -->\n```\n");
  const char *end = strstr(begin, "```\n<!-- standards:end -->");
  AS_CHECK(end != NULL);
  AS_CHECK_MEM_EQ(begin, (size_t)(end - begin), insp_standards_default,
                  strlen(insp_standards_default));
}
