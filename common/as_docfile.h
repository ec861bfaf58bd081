/* as_docfile: the fleet's readable rule files (review's policy, the
 * inspection standards, the notification templates), read whole and handed
 * to their parser.
 *
 * A file is at most AS_DOCFILE_MAX bytes (1 MiB): one larger is refused
 * before it is parsed, so a wrong path (a log, a dump) cannot take the
 * worker's memory. Every refusal names the file: "<path>: <why>", where why
 * is the parser's own message ("line N: ...") or the read's.
 *
 * Ownership: the text lives only during the call; what parse returns is the
 * caller's. */
#ifndef AS_DOCFILE_H
#define AS_DOCFILE_H

#include <stddef.h>

#define AS_DOCFILE_MAX ((size_t)1 << 20)

/* Parses len bytes of text (NUL-terminated at len); returns the parsed
 * document, or NULL with the reason in err. */
typedef void *(*as_docfile_parse_fn)(const char *text, size_t len, char *err, size_t errlen);

/* The line (from 1) of the first NUL byte of len bytes of text, or 0:
 * rule files are text, and a parser refuses one with "line N: NUL byte". */
int as_docfile_nul_line(const char *text, size_t len);

/* The document parsed from the file at path, or NULL with err set. */
void *as_docfile_load(const char *path, as_docfile_parse_fn parse, char *err, size_t errlen);

#endif
