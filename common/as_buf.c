/* as_buf: growable buffer and array-literal builder for bulk SQL. */
#include "as_buf.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void as_buf_init(as_buf_t *b) {
  memset(b, 0, sizeof *b);
}

void as_buf_free(as_buf_t *b) {
  free(b->data);
  as_buf_init(b);
}

void as_buf_reset(as_buf_t *b) {
  b->len = 0;
  b->failed = false;
  if (b->data) b->data[0] = '\0';
}

bool as_buf_ok(const as_buf_t *b) {
  return !b->failed;
}

static bool reserve(as_buf_t *b, size_t extra) {
  if (b->failed) return false;
  if (b->len + extra + 1 <= b->cap) return true;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->failed = true;
    return false;
  }
  b->data = p;
  b->cap = cap;
  return true;
}

void as_buf_append(as_buf_t *b, const void *p, size_t n) {
  if (!reserve(b, n)) return;
  memcpy(b->data + b->len, p, n);
  b->len += n;
  b->data[b->len] = '\0';
}

void as_buf_puts(as_buf_t *b, const char *s) {
  as_buf_append(b, s, strlen(s));
}

void as_buf_printf(as_buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || !reserve(b, (size_t)n)) return;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void as_buf_hex(as_buf_t *b, const uint8_t *p, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (!reserve(b, 2 * n)) return;
  char *o = b->data + b->len;
  for (size_t i = 0; i < n; i++) {
    o[2 * i] = hex[p[i] >> 4];
    o[2 * i + 1] = hex[p[i] & 15];
  }
  b->len += 2 * n;
  b->data[b->len] = '\0';
}

const char *as_buf_str(as_buf_t *b) {
  return b->data ? b->data : "";
}

void as_buf_arr_open(as_buf_t *b) {
  b->arr_n = 0;
  as_buf_append(b, "{", 1);
}

static void arr_sep(as_buf_t *b) {
  if (b->arr_n++ > 0) as_buf_append(b, ",", 1);
}

void as_buf_arr_str(as_buf_t *b, const char *s) {
  arr_sep(b);
  as_buf_append(b, "\"", 1);
  for (const char *p = s; *p; p++) {
    if (*p == '"' || *p == '\\') as_buf_append(b, "\\", 1);
    as_buf_append(b, p, 1);
  }
  as_buf_append(b, "\"", 1);
}

void as_buf_arr_raw(as_buf_t *b, const char *s, size_t n) {
  arr_sep(b);
  as_buf_append(b, s, n);
}

void as_buf_arr_close(as_buf_t *b) {
  as_buf_append(b, "}", 1);
}

/* array_send's layout: ndim, has-null flag, element type, then per
 * dimension its size and lower bound, then per element a length and the
 * bytes; all integers 4 bytes big-endian. */
enum { BIN_HEADER = 20, BIN_COUNT_AT = 12 };

static void put_be32(char *o, uint32_t v) {
  o[0] = (char)(v >> 24);
  o[1] = (char)(v >> 16);
  o[2] = (char)(v >> 8);
  o[3] = (char)v;
}

void as_buf_bin_open(as_buf_t *b, uint32_t elem_oid) {
  char h[BIN_HEADER];
  put_be32(h, 1);
  put_be32(h + 4, 0);
  put_be32(h + 8, elem_oid);
  put_be32(h + BIN_COUNT_AT, 0);
  put_be32(h + 16, 1);
  b->arr_n = 0;
  as_buf_append(b, h, sizeof h);
}

void as_buf_bin_bytes2(as_buf_t *b, const void *head, size_t hn, const void *p, size_t n) {
  if (hn > INT32_MAX || n > INT32_MAX - hn) {
    b->failed = true;
    return;
  }
  char len[4];
  put_be32(len, (uint32_t)(hn + n));
  as_buf_append(b, len, sizeof len);
  as_buf_append(b, head, hn);
  as_buf_append(b, p, n);
  b->arr_n++;
}

void as_buf_bin_bytes(as_buf_t *b, const void *p, size_t n) {
  as_buf_bin_bytes2(b, "", 0, p, n);
}

/* The has-null flag in the header is informational: array_recv finds NULLs
 * by their length, -1. */
void as_buf_bin_null(as_buf_t *b) {
  char len[4];
  put_be32(len, UINT32_MAX);
  as_buf_append(b, len, sizeof len);
  b->arr_n++;
}

void as_buf_bin_close(as_buf_t *b) {
  if (b->failed || b->len < BIN_HEADER || b->arr_n > INT32_MAX) {
    b->failed = true;
    return;
  }
  put_be32(b->data + BIN_COUNT_AT, (uint32_t)b->arr_n);
}
