/* as_cols: named columns of bulk statements as array parameters (binary
 * where the type allows, else literals), and the statement text written
 * from the column table (see as_cols.h). */
#include "as_cols.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_int.h"

/* The binary element type of a column's SQL type, 0 for a text literal. */
static uint32_t oid_of(const char *type) {
  static const struct {
    const char *type;
    uint32_t oid;
  } map[] = {{"text", AS_OID_TEXT},  {"bigint", AS_OID_INT8}, {"int", AS_OID_INT4},
             {"bool", AS_OID_BOOL},  {"uuid", AS_OID_UUID},   {"bytea", AS_OID_BYTEA},
             {"jsonb", AS_OID_JSONB}};
  for (size_t i = 0; type && i < sizeof map / sizeof map[0]; i++)
    if (strcmp(type, map[i].type) == 0) return map[i].oid;
  return 0;
}

static void open_col(as_cols_t *c, int col) {
  if (c->oid[col])
    as_buf_bin_open(&c->b[col], c->oid[col]);
  else
    as_buf_arr_open(&c->b[col]);
}

void as_cols_init(as_cols_t *c, const as_bulk_t *stmt) {
  memset(c, 0, sizeof *c);
  c->stmt = stmt;
  c->bad = stmt->ncols < 0 || stmt->ncols > AS_COLS_MAX;
  c->n = c->bad ? 0 : stmt->ncols;
  for (int i = 0; i < c->n; i++) {
    c->oid[i] = oid_of(stmt->cols[i].type);
    open_col(c, i);
  }
}

void as_cols_free(as_cols_t *c) {
  for (int i = 0; i < c->n; i++) as_buf_free(&c->b[i]);
}

void as_cols_reset(as_cols_t *c) {
  for (int i = 0; i < c->n; i++) {
    as_buf_reset(&c->b[i]);
    open_col(c, i);
  }
  c->closed = false;
  c->bad = c->n != c->stmt->ncols;
  c->why = NULL;
}

static void refuse(as_cols_t *c, const char *why) {
  if (!c->bad) c->why = why;
  c->bad = true;
}

/* The column's buffer, or NULL (and the statement refused) for an index
 * outside the table or a value after the arrays were closed. */
static as_buf_t *col_buf(as_cols_t *c, int col) {
  if (col < 0 || col >= c->n || c->closed) {
    refuse(c, "a value outside the column table, or after the statement was bound");
    return NULL;
  }
  return &c->b[col];
}

static void put_be(uint8_t *o, uint64_t v, int n) {
  for (int i = 0; i < n; i++) o[i] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void bin_int(as_cols_t *c, as_buf_t *b, uint32_t oid, long long v) {
  uint8_t o[8];
  if (oid == AS_OID_INT8) {
    put_be(o, (uint64_t)v, 8);
    as_buf_bin_bytes(b, o, 8);
  } else if (oid == AS_OID_INT4 && v >= INT32_MIN && v <= INT32_MAX) {
    put_be(o, (uint64_t)(uint32_t)(int32_t)v, 4);
    as_buf_bin_bytes(b, o, 4);
  } else {
    refuse(c, oid == AS_OID_INT4 ? "a number outside int's range"
                                 : "a number for a column of another type");
  }
}

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* A UUID as 8-4-4-4-12 or 32 hex digits (PostgreSQL's common forms). */
static bool parse_uuid(const char *s, uint8_t out[16]) {
  size_t len = strlen(s), k = 0;
  bool dashed = len == 36;
  if (len != 36 && len != 32) return false;
  for (size_t i = 0; i < len; i++) {
    if (dashed && (i == 8 || i == 13 || i == 18 || i == 23)) {
      if (s[i] != '-') return false;
      continue;
    }
    int v = hexval(s[i]);
    if (v < 0) return false;
    if (k % 2 == 0)
      out[k / 2] = (uint8_t)(v << 4);
    else
      out[k / 2] |= (uint8_t)v;
    k++;
  }
  return k == 32;
}

/* A whole decimal integer, signed as int8in reads one. */
static bool parse_int(const char *s, long long *v) {
  return as_int_parse(s, AS_INT_SIGNED, LLONG_MIN, LLONG_MAX, v) == 0;
}

void as_cols_str(as_cols_t *c, int col, const char *s) {
  as_buf_t *b = col_buf(c, col);
  if (!b) return;
  uint32_t oid = c->oid[col];
  long long v;
  uint8_t u[16];
  if (!oid && s)
    as_buf_arr_str(b, s);
  else if (!oid)
    as_buf_arr_raw(b, "NULL", 4);
  else if (!s)
    as_buf_bin_null(b);
  else if (oid == AS_OID_TEXT || oid == AS_OID_BYTEA)
    as_buf_bin_bytes(b, s, strlen(s));
  else if (oid == AS_OID_JSONB) /* jsonb_recv: a version byte, then the text */
    as_buf_bin_bytes2(b, "\1", 1, s, strlen(s));
  else if (oid == AS_OID_UUID && parse_uuid(s, u))
    as_buf_bin_bytes(b, u, 16);
  else if ((oid == AS_OID_INT8 || oid == AS_OID_INT4) && parse_int(s, &v))
    bin_int(c, b, oid, v);
  else if (oid == AS_OID_BOOL && (strcmp(s, "t") == 0 || strcmp(s, "f") == 0))
    as_buf_bin_bytes(b, s[0] == 't' ? "\1" : "\0", 1);
  else
    refuse(c, oid == AS_OID_UUID ? "a string that is not a UUID"
                                 : "a string the column's type cannot hold");
}

void as_cols_int(as_cols_t *c, int col, long long v) {
  as_buf_t *b = col_buf(c, col);
  if (!b) return;
  uint32_t oid = c->oid[col];
  char num[24];
  int len = snprintf(num, sizeof num, "%lld", v);
  if (!oid)
    as_buf_arr_raw(b, num, (size_t)len);
  else if (oid == AS_OID_TEXT)
    as_buf_bin_bytes(b, num, (size_t)len);
  else
    bin_int(c, b, oid, v);
}

void as_cols_bool(as_cols_t *c, int col, bool v) {
  as_buf_t *b = col_buf(c, col);
  if (!b) return;
  if (!c->oid[col])
    as_buf_arr_raw(b, v ? "t" : "f", 1);
  else if (c->oid[col] == AS_OID_BOOL)
    as_buf_bin_bytes(b, v ? "\1" : "\0", 1);
  else if (c->oid[col] == AS_OID_TEXT)
    as_buf_bin_bytes(b, v ? "t" : "f", 1);
  else
    refuse(c, "a boolean for a column of another type");
}

void as_cols_null(as_cols_t *c, int col) {
  as_cols_str(c, col, NULL);
}

void as_cols_bytes(as_cols_t *c, int col, const void *p, size_t n) {
  as_buf_t *b = col_buf(c, col);
  if (b && c->oid[col] == AS_OID_BYTEA)
    as_buf_bin_bytes(b, p, n);
  else if (b)
    refuse(c, "bytes for a column that is not bytea");
}

void as_cols_hex(as_cols_t *c, int col, const uint8_t *p, size_t n) {
  as_buf_t *b = col_buf(c, col);
  if (!b) return;
  if (c->oid[col] && c->oid[col] != AS_OID_TEXT) {
    refuse(c, "hex for a column that is not text");
    return;
  }
  as_buf_t hex;
  as_buf_init(&hex);
  as_buf_hex(&hex, p, n);
  if (!as_buf_ok(&hex))
    b->failed = true;
  else if (c->oid[col])
    as_buf_bin_bytes(b, hex.data ? hex.data : "", hex.len);
  else
    as_buf_arr_raw(b, as_buf_str(&hex), hex.len);
  as_buf_free(&hex);
}

size_t as_cols_rows(const as_cols_t *c) {
  size_t most = 0;
  for (int i = 0; i < c->n; i++)
    if (c->b[i].arr_n > most) most = c->b[i].arr_n;
  return most;
}

/* ---- the statement's text -------------------------------------------- */

/* The set a column belongs to: "l" for "l.case_id", "u" for "case_id". */
static const char *set_of(const char *name, size_t *len) {
  const char *dot = strchr(name, '.');
  *len = dot ? (size_t)(dot - name) : 1;
  return dot ? name : "u";
}

static bool in_set(const char *name, const char *set, size_t len) {
  size_t l;
  const char *s = set_of(name, &l);
  return l == len && strncmp(s, set, len) == 0;
}

static const char *own_name(const char *name) {
  const char *dot = strchr(name, '.');
  return dot ? dot + 1 : name;
}

static void param(as_buf_t *sql, const as_bulk_t *s, int i) {
  as_buf_printf(sql, "$%d::%s[]", i + 1, s->cols[i].type);
}

/* {{set}} or {{set:ord}}: the set's unnest with its column names. */
static int write_unnest(const as_bulk_t *s, const char *tok, size_t len, bool *used, as_buf_t *sql,
                        char *err, size_t errlen) {
  const char *colon = memchr(tok, ':', len);
  size_t slen = colon ? (size_t)(colon - tok) : len;
  int n = 0;
  as_buf_puts(sql, "unnest(");
  for (int i = 0; i < s->ncols; i++) {
    if (!in_set(s->cols[i].name, tok, slen)) continue;
    if (n++) as_buf_puts(sql, ", ");
    param(sql, s, i);
    used[i] = true;
  }
  if (n == 0) {
    snprintf(err, errlen, "bulk statement: no column in set \"%.*s\"", (int)slen, tok);
    return -EINVAL;
  }
  as_buf_printf(sql, ")%s AS %.*s(", colon ? " WITH ORDINALITY" : "", (int)slen, tok);
  n = 0;
  for (int i = 0; i < s->ncols; i++)
    if (in_set(s->cols[i].name, tok, slen))
      as_buf_printf(sql, "%s%s", n++ ? ", " : "", own_name(s->cols[i].name));
  if (colon) as_buf_printf(sql, ", %.*s", (int)(len - slen - 1), colon + 1);
  as_buf_puts(sql, ")");
  return 0;
}

/* {{$name}}: one column as an array parameter. */
static int write_param(const as_bulk_t *s, const char *name, size_t len, bool *used, as_buf_t *sql,
                       char *err, size_t errlen) {
  for (int i = 0; i < s->ncols; i++)
    if (strlen(s->cols[i].name) == len && strncmp(s->cols[i].name, name, len) == 0) {
      param(sql, s, i);
      used[i] = true;
      return 0;
    }
  snprintf(err, errlen, "bulk statement: no column \"%.*s\"", (int)len, name);
  return -EINVAL;
}

static int write_sql(const as_bulk_t *s, as_buf_t *sql, char *err, size_t errlen) {
  bool used[AS_COLS_MAX] = {false};
  int rc = 0;
  for (int i = 0; rc == 0 && i < s->ncols; i++)
    if (!s->cols[i].name || !s->cols[i].type) {
      snprintf(err, errlen, "bulk statement: column %d has no name or type", i);
      rc = -EINVAL;
    }
  const char *p = s->sql;
  while (rc == 0 && *p) {
    const char *open = strstr(p, "{{"), *close = open ? strstr(open, "}}") : NULL;
    if (!close) {
      as_buf_puts(sql, p);
      break;
    }
    as_buf_append(sql, p, (size_t)(open - p));
    const char *tok = open + 2;
    size_t len = (size_t)(close - tok);
    rc = tok[0] == '$' ? write_param(s, tok + 1, len - 1, used, sql, err, errlen)
                       : write_unnest(s, tok, len, used, sql, err, errlen);
    p = close + 2;
  }
  for (int i = 0; rc == 0 && i < s->ncols; i++)
    if (!used[i]) {
      snprintf(err, errlen, "bulk statement: column \"%s\" not used by the text", s->cols[i].name);
      rc = -EINVAL;
    }
  return rc == 0 && !as_buf_ok(sql) ? -ENOMEM : rc;
}

/* The columns of one set must hold as many values each. */
static int check_sets(const as_cols_t *c, char *err, size_t errlen) {
  const as_col_t *cols = c->stmt->cols;
  for (int i = 0; i < c->n; i++)
    for (int j = i + 1; j < c->n; j++) {
      size_t len;
      const char *a = cols[i].name, *set = set_of(a, &len);
      if (!in_set(cols[j].name, set, len) || c->b[i].arr_n == c->b[j].arr_n) continue;
      snprintf(err, errlen, "bulk statement: column \"%s\" has %zu values, \"%s\" %zu", a,
               c->b[i].arr_n, cols[j].name, c->b[j].arr_n);
      return -EINVAL;
    }
  return 0;
}

int as_cols_bind(as_cols_t *c, const as_bulk_t *stmt, as_buf_t *sql, const char **vals, char *err,
                 size_t errlen) {
  if (c->bad || stmt->cols != c->stmt->cols || stmt->ncols != c->stmt->ncols) {
    snprintf(err, errlen, "bulk statement: %s",
             c->bad && c->why ? c->why : "a value outside the column table, or another table");
    return -EINVAL;
  }
  int rc = write_sql(stmt, sql, err, errlen);
  if (rc == 0) rc = check_sets(c, err, errlen);
  for (int i = 0; rc == 0 && i < c->n; i++) {
    bool bin = c->oid[i] != 0;
    if (!c->closed && bin)
      as_buf_bin_close(&c->b[i]);
    else if (!c->closed)
      as_buf_arr_close(&c->b[i]);
    if (!as_buf_ok(&c->b[i]) || c->b[i].len > INT32_MAX) rc = -ENOMEM;
    vals[i] = bin ? c->b[i].data : as_buf_str(&c->b[i]);
    c->lens[i] = bin ? (int)c->b[i].len : 0;
    c->fmts[i] = bin;
  }
  if (rc == 0) c->closed = true;
  return rc < 0 ? rc : c->n;
}

int as_cols_run_stmt(as_cols_t *c, const as_bulk_t *stmt, as_db_t *db, PGresult **out) {
  if (out) *out = NULL;
  if (!c->bad && as_cols_rows(c) == 0) return 0;
  as_buf_t sql;
  as_buf_init(&sql);
  const char *vals[AS_COLS_MAX];
  int n = as_cols_bind(c, stmt, &sql, vals, db->err, sizeof db->err);
  if (n == -EINVAL) db->sqlstate[0] = '\0';
  int rc = n < 0 ? n : as_db_query_ex(db, as_buf_str(&sql), n, vals, c->lens, c->fmts, 0, out);
  as_buf_free(&sql);
  return rc;
}

int as_cols_run(as_cols_t *c, as_db_t *db, PGresult **out) {
  return as_cols_run_stmt(c, c->stmt, db, out);
}
