/* as_log: JSON-lines logging on stderr.
 *
 * One line per event: {"ts":"2026-11-23T10:00:00.123456Z","level":"info",
 * "service":"intake","instance":"host-123","msg":"...", <fields>}. Field values
 * are escaped as JSON strings; numbers are written bare. Personal data (phone,
 * address, e-mail) must never be passed as a field: callers log ids only.
 *
 * Ownership: as_log_t borrows nothing after as_log_init (it copies service and
 * instance into fixed buffers). Field keys and string values are borrowed for
 * the duration of the call. No allocation happens on the logging path. */
#ifndef AS_LOG_H
#define AS_LOG_H

#include <stddef.h>
#include <stdio.h>

#include "as_err.h"

typedef enum {
  AS_LOG_DEBUG = 0,
  AS_LOG_INFO = 1,
  AS_LOG_WARN = 2,
  AS_LOG_ERROR = 3,
} as_log_level_t;

typedef struct as_log {
  char service[32];
  char instance[96];
  as_log_level_t min_level;
  FILE *out; /* borrowed; stderr unless a test redirects it */
} as_log_t;

typedef enum { AS_LOG_F_STR, AS_LOG_F_INT } as_log_field_kind_t;

typedef struct as_log_field {
  const char *key;
  const char *str; /* AS_LOG_F_STR; NULL is written as null */
  long long num;   /* AS_LOG_F_INT */
  as_log_field_kind_t kind;
} as_log_field_t;

#define AS_F_STR(k, v) ((as_log_field_t){.key = (k), .str = (v), .kind = AS_LOG_F_STR})
#define AS_F_INT(k, v) ((as_log_field_t){.key = (k), .num = (long long)(v), .kind = AS_LOG_F_INT})

void as_log_init(as_log_t *log, const char *service, const char *instance,
                 as_log_level_t min_level);

/* Parses "debug", "info", "warn", "error"; returns 0 or -EINVAL. */
AS_MUST_CHECK int as_log_level_parse(const char *s, as_log_level_t *out);

/* Writes one line atomically (one fwrite of a line built on the stack; a line
 * longer than 8 KiB has its longest values cut and marked "...(cut)"). */
void as_log_emit(const as_log_t *log, as_log_level_t level, const char *msg,
                 const as_log_field_t *fields, size_t nfields);

/* Writes s as a JSON string (with quotes) into buf; returns bytes written
 * excluding the NUL, always NUL-terminates, never overflows. Invalid UTF-8
 * bytes are written as \u00XX escapes of the raw byte; control characters are
 * escaped. Used by the logger and the HTTP/metrics code. */
size_t as_log_json_escape(char *buf, size_t cap, const char *s);

#define AS_LOG(log, level, msg, ...)                                                               \
  do {                                                                                             \
    const as_log_field_t as_log__f[] = {AS_F_INT(NULL, 0), ##__VA_ARGS__};                         \
    as_log_emit((log), (level), (msg), as_log__f + 1, sizeof as_log__f / sizeof as_log__f[0] - 1); \
  } while (0)
#define AS_DEBUG(log, msg, ...) AS_LOG(log, AS_LOG_DEBUG, msg, ##__VA_ARGS__)
#define AS_INFO(log, msg, ...) AS_LOG(log, AS_LOG_INFO, msg, ##__VA_ARGS__)
#define AS_WARN(log, msg, ...) AS_LOG(log, AS_LOG_WARN, msg, ##__VA_ARGS__)
#define AS_ERROR(log, msg, ...) AS_LOG(log, AS_LOG_ERROR, msg, ##__VA_ARGS__)

#endif
