/* Fuzz target for notif_templates_parse: the templates are a file an
 * operator edits and the notification worker reloads on SIGHUP, so no text
 * may crash it, and templates it accepts must render every text of every
 * template for every channel without fault, within the channel's bound.
 * Seeds: tests/fuzz/corpus/templates/ (the built-in templates, small valid
 * files, refused ones). The Makefile links it with libFuzzer (`make fuzz`)
 * and with tests/fuzz/replay.c (`make test`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../services/notification/notif_templates.h"
#include "as_utf8.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void rendered(const notif_text_t *x) {
  static const notif_param_t p[] = {{"case_number", "AS-1"}, {"amount", "<¥1&2>"}};
  as_buf_t b;
  as_buf_init(&b);
  for (int k = 0; k < NOTIF_NPARTS; k++) {
    as_buf_reset(&b);
    notif_render(&b, x->part[k], p, 2, k == NOTIF_PART_EMAIL ? NOTIF_ESC_HTML : NOTIF_ESC_PLAIN,
                 k == NOTIF_PART_SMS ? NOTIF_SMS_MAX : 0);
    if (!as_buf_ok(&b)) break;
    if (k == NOTIF_PART_SMS && b.len > NOTIF_SMS_MAX) abort();
    if (!as_utf8_valid(as_buf_str(&b), b.len)) abort(); /* a cut never splits a character */
  }
  as_buf_free(&b);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[512];
  notif_templates_t *t = notif_templates_parse((const char *)data, size, err, sizeof err);
  if (t == NULL) {
    if (strncmp(err, "line ", 5) != 0 && strncmp(err, "missing ", 8) != 0 &&
        strstr(err, "1 MiB") == NULL && strcmp(err, "out of memory") != 0)
      abort(); /* every refusal says where or what */
    return 0;
  }
  static const char *const locales[] = {"en", "zh-CN", "zh", "fr", ""};
  const char *id = strstr((const char *)data, "[");
  char name[65] = "";
  if (id) {
    size_t n = strcspn(id + 1, " ]");
    if (n < sizeof name) memcpy(name, id + 1, n), name[n] = '\0';
  }
  for (size_t i = 0; i < 5; i++) {
    const notif_text_t *x = notif_templates_find(t, name, locales[i], "en");
    if (x) rendered(x);
  }
  notif_templates_free(t);
  return 0;
}
