/* Unit tests for as_docfile: the 1 MiB bound (a file of exactly 1 MiB is
 * parsed, one byte more is refused before the parser sees it), the text
 * handed over NUL-terminated at its length, and every refusal naming the
 * file (a read error, the parser's own "line N: ..."). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "as_docfile.h"
#include "as_err.h"
#include "as_test.h"

static size_t seen_len;
static int seen_nul;

/* Accepts a text whose first byte is 'a'; says which line is wrong else. */
static void *parse(const char *text, size_t len, char *err, size_t errlen) {
  seen_len = len;
  seen_nul = text[len] == '\0';
  if (len && text[0] == 'a') return strdup("parsed");
  as_err_set(err, errlen, "line 3: no a");
  return NULL;
}

static void file_of(char *path, size_t n, char first) {
  int fd = mkstemp(path);
  AS_CHECK(fd >= 0);
  char *buf = malloc(n ? n : 1);
  AS_CHECK(buf != NULL);
  memset(buf, 'x', n);
  if (n) buf[0] = first;
  AS_CHECK_INT_EQ(write(fd, buf, n), (long long)n);
  free(buf);
  close(fd);
}

AS_TEST(exactly_the_bound_is_parsed_one_byte_more_is_refused) {
  char path[] = "/tmp/as-docfile-XXXXXX", err[512] = "";
  file_of(path, AS_DOCFILE_MAX, 'a');
  char *doc = as_docfile_load(path, parse, err, sizeof err);
  AS_CHECK(doc != NULL);
  AS_CHECK_STR_EQ(doc ? doc : "", "parsed");
  AS_CHECK_INT_EQ((long long)seen_len, (long long)AS_DOCFILE_MAX);
  AS_CHECK(seen_nul);
  free(doc);
  unlink(path);
  char big[] = "/tmp/as-docfile-XXXXXX";
  file_of(big, AS_DOCFILE_MAX + 1, 'a');
  seen_len = 0;
  AS_CHECK(as_docfile_load(big, parse, err, sizeof err) == NULL);
  AS_CHECK_INT_EQ((long long)seen_len, 0); /* the parser never saw it */
  char want[600];
  snprintf(want, sizeof want, "%s: more than 1 MiB", big);
  AS_CHECK_STR_EQ(err, want);
  unlink(big);
}

AS_TEST(refusals_name_the_file) {
  char path[] = "/tmp/as-docfile-XXXXXX", err[512] = "", want[600];
  file_of(path, 10, 'b');
  AS_CHECK(as_docfile_load(path, parse, err, sizeof err) == NULL);
  snprintf(want, sizeof want, "%s: line 3: no a", path);
  AS_CHECK_STR_EQ(err, want);
  unlink(path);
  AS_CHECK(as_docfile_load("/nonexistent/rules", parse, err, sizeof err) == NULL);
  AS_CHECK_STR_EQ(err, "/nonexistent/rules: No such file or directory");
  char empty[] = "/tmp/as-docfile-XXXXXX";
  file_of(empty, 0, 'a'); /* empty: the parser decides */
  AS_CHECK(as_docfile_load(empty, parse, err, sizeof err) == NULL);
  AS_CHECK_INT_EQ((long long)seen_len, 0);
  AS_CHECK(seen_nul);
  unlink(empty);
}

AS_TEST(nul_line_counts_lines_up_to_the_first_nul) {
  AS_CHECK_INT_EQ(as_docfile_nul_line("a\nb\n", 4), 0);
  AS_CHECK_INT_EQ(as_docfile_nul_line("\0", 1), 1);
  AS_CHECK_INT_EQ(as_docfile_nul_line("a\nb\n\0x\0", 7), 3);
  AS_CHECK_INT_EQ(as_docfile_nul_line("", 0), 0);
}
