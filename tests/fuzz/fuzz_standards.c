/* Fuzz target for insp_standards_parse: the quality standards are a file
 * an operator edits and the inspection worker reloads on SIGHUP, so no
 * text may crash it, and standards it accepts must judge every result set
 * without fault. Seeds: tests/fuzz/corpus/standards/ (the built-in
 * standards, small valid files, refused ones). An accepted file's every
 * category judges its checklist all passed, each item failed alone, and
 * every item failed; a grade is always A..D with a disposition. The
 * Makefile links it with libFuzzer (`make fuzz`) and with
 * tests/fuzz/replay.c (`make test`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/inspection/insp_standards.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void judged(const insp_standards_t *s, const insp_category_t *c, int fail_mode) {
  insp_result_t r[INSP_ITEMS_MAX];
  insp_judgment_t j;
  char why[256];
  for (size_t k = 0; k < c->nitems; k++) {
    for (size_t i = 0; i < c->nitems; i++)
      r[i] = (insp_result_t){c->items[i].code, !(fail_mode == 2 || (fail_mode == 1 && i == k))};
    if (insp_judge(s, c, r, c->nitems, &j, why, sizeof why) != NULL) abort();
    if (j.grade < 1 || j.grade > 4 || j.disposition < 1 || j.disposition > 4) abort();
    if (j.defect_confirmed != (j.defect_code != NULL)) abort();
    if (fail_mode != 1) break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  insp_standards_t *s = insp_standards_parse((const char *)data, size, err, sizeof err);
  if (s == NULL) {
    if (strncmp(err, "line ", 5) != 0 && strncmp(err, "missing ", 8) != 0 &&
        strstr(err, "1 MiB") == NULL && strcmp(err, "out of memory") != 0)
      abort(); /* every refusal says where or what */
    return 0;
  }
  static const char *const names[] = {"default", "apparel", "electronics", "fresh_produce", "x"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const insp_category_t *c = insp_standards_category(s, names[i]);
    for (int mode = 0; mode < 3; mode++) judged(s, c, mode);
  }
  int64_t minor;
  (void)insp_standards_coupon(s, "CNY", &minor);
  if (!insp_standards_version(s)[0] || !insp_standards_demand(s)) abort();
  insp_standards_free(s);
  return 0;
}
