#include "as_docfile.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_err.h"

int as_docfile_nul_line(const char *text, size_t len) {
  const char *nul = memchr(text, '\0', len);
  if (!nul) return 0;
  int line = 1;
  for (const char *c = text; c < nul; c++) line += *c == '\n';
  return line;
}

void *as_docfile_load(const char *path, as_docfile_parse_fn parse, char *err, size_t errlen) {
  char *buf = malloc(AS_DOCFILE_MAX + 1);
  void *doc = NULL;
  if (!buf) return as_err_set(err, errlen, "%s: out of memory", path), NULL;
  FILE *f = fopen(path, "rb");
  if (!f) {
    as_err_set(err, errlen, "%s: %s", path, strerror(errno));
    free(buf);
    return NULL;
  }
  /* one byte past the bound tells a file of exactly 1 MiB from a larger one */
  size_t len = fread(buf, 1, AS_DOCFILE_MAX + 1, f);
  if (ferror(f))
    as_err_set(err, errlen, "%s: read failed", path);
  else if (len > AS_DOCFILE_MAX)
    as_err_set(err, errlen, "%s: more than 1 MiB", path);
  else {
    buf[len] = '\0';
    if (!(doc = parse(buf, len, err, errlen))) {
      char why[384];
      snprintf(why, sizeof why, "%s", err ? err : "");
      as_err_set(err, errlen, "%s: %s", path, why);
    }
  }
  fclose(f);
  free(buf);
  return doc;
}
