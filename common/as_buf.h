/* as_buf: a growable byte buffer, and the PostgreSQL array literals the
 * runtime's bulk statements are built from.
 *
 * Ownership: the buffer owns its data; as_buf_free releases it. A failed append leaves the buffer
 * as it was and marks it failed, so a sequence of appends needs one check
 * (as_buf_ok) at the end. */
#ifndef AS_BUF_H
#define AS_BUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct as_buf {
  char *data;
  size_t len, cap;
  size_t arr_n; /* elements written since as_buf_arr_open */
  bool failed;
} as_buf_t;

void as_buf_init(as_buf_t *b);
void as_buf_free(as_buf_t *b);
void as_buf_reset(as_buf_t *b); /* length 0, memory kept, failure cleared */
bool as_buf_ok(const as_buf_t *b);
void as_buf_append(as_buf_t *b, const void *p, size_t n);
void as_buf_puts(as_buf_t *b, const char *s);
void as_buf_printf(as_buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void as_buf_hex(as_buf_t *b, const uint8_t *p, size_t n);
/* NUL-terminated contents ("" when empty); valid until the next append. */
const char *as_buf_str(as_buf_t *b);

/* Array literals: as_buf_arr_open, then as_buf_arr_str / as_buf_arr_raw for
 * each element, then as_buf_arr_close. Strings are always double-quoted with
 * " and \ escaped, so any text is safe; raw elements (numbers, hex) are
 * written as they are. */
void as_buf_arr_open(as_buf_t *b);
void as_buf_arr_str(as_buf_t *b, const char *s);
void as_buf_arr_raw(as_buf_t *b, const char *s, size_t n);
void as_buf_arr_close(as_buf_t *b);

/* A one-dimensional array in PostgreSQL's binary format (array_send's), for
 * a parameter sent with format 1: elements go as they are, where a text
 * literal would quote or hex them and make the server parse them back.
 * as_buf_bin_open writes the header with the element type's OID (AS_OID_*),
 * each as_buf_bin_bytes one element in that type's binary form (as_buf_bin_null
 * a NULL), as_buf_bin_close the element count into the header; the result
 * is as_buf's data and len (it may contain NUL bytes). */
enum {
  AS_OID_BOOL = 16,
  AS_OID_BYTEA = 17,
  AS_OID_INT8 = 20,
  AS_OID_INT4 = 23,
  AS_OID_TEXT = 25,
  AS_OID_UUID = 2950,
  AS_OID_JSONB = 3802
};
void as_buf_bin_open(as_buf_t *b, uint32_t elem_oid);
void as_buf_bin_bytes(as_buf_t *b, const void *p, size_t n);
void as_buf_bin_null(as_buf_t *b);
/* One element made of head then p (jsonb's version byte and its text). */
void as_buf_bin_bytes2(as_buf_t *b, const void *head, size_t hn, const void *p, size_t n);
void as_buf_bin_close(as_buf_t *b);

#endif
