/* Fuzz target for as_http_parse_request, the probe and metrics listener's
 * parser of what a peer sends. Seeds: tests/fuzz/corpus/http/ (valid and
 * malformed request heads). The Makefile links it with libFuzzer (`make
 * fuzz`) and with tests/fuzz/replay.c (`make test`). */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_http.h"

/* The listener reads at most this much of a head (as_http.c HEAD_MAX). */
enum { HEAD_MAX = 8192 };

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static bool inside(const char *p, const char *buf, size_t len) {
  return p >= buf && p < buf + len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char *method = NULL, *path = NULL;

  if (size > HEAD_MAX) return 0;
  /* The parser writes into the buffer, as into the listener's. */
  char *buf = malloc(size ? size : 1);
  if (buf == NULL) abort();
  memcpy(buf, data, size);
  int status = as_http_parse_request(buf, size, &method, &path);
  if (status == 0) {
    /* What the route callback may rely on. */
    if (!inside(method, buf, size) || !inside(path, buf, size)) abort();
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) abort();
    if (path[0] != '/' || strpbrk(path, "?# ") != NULL) abort();
    for (const char *p = path; *p; p++)
      if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e) abort();
  } else if (status != 400 && status != 405) {
    abort();
  }
  free(buf);
  return 0;
}
