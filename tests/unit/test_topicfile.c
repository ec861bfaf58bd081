/* Unit tests for as_topicfile, the topics-table reader shared by as-broker
 * and as-topics: the project's own proto/topics.tsv parses to what the
 * generated table says, and each kind of bad line is refused with its
 * path:line. */
#include "as_test.h"
#include "as_topicfile.h"
#include "as_topics.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Writes text to a fresh temporary file; returns its path (free it, and
 * unlink it). */
static char *write_tmp(const char *text) {
  char *path = strdup("/tmp/test_topicfile.XXXXXX");
  int fd = mkstemp(path);
  AS_CHECK(fd >= 0);
  AS_CHECK(write(fd, text, strlen(text)) == (ssize_t)strlen(text));
  close(fd);
  return path;
}

/* Loads text; returns the rc, with the error text in err. */
static int load_text(as_topicfile_t *t, const char *text, char *err, size_t errlen) {
  char *path = write_tmp(text);
  int rc = as_topicfile_load(t, path, err, errlen);
  unlink(path);
  free(path);
  return rc;
}

#define AS_TOPIC_CHECK(id, name, parts, consumers)               \
  do {                                                           \
    const as_topicfile_entry_t *e = as_topicfile_find(&t, name); \
    AS_CHECK(e != NULL);                                         \
    AS_CHECK_INT_EQ(e->partitions, parts);                       \
  } while (0);

AS_TEST(project_table_matches_generated_header) {
  as_topicfile_t t = {0};
  char err[512] = "";

  AS_CHECK_INT_EQ(as_topicfile_load(&t, "proto/topics.tsv", err, sizeof err), 0);
  AS_CHECK_INT_EQ(t.n, AS_TOPIC__COUNT);
  AS_TOPICS(AS_TOPIC_CHECK)
  as_topicfile_free(&t);
  as_topicfile_free(&t); /* twice is harmless */
}

AS_TEST(comments_blank_lines_and_repeats) {
  as_topicfile_t t = {0};
  char err[512] = "";

  AS_CHECK_INT_EQ(load_text(&t,
                            "# a comment\n\n   \n"
                            "a.b 3 case_id - text with spaces\n"
                            "c-d\t7\tkey\n"
                            "a.b 3 case_id\n",
                            err, sizeof err),
                  0);
  AS_CHECK_INT_EQ(t.n, 2);
  AS_CHECK_STR_EQ(t.v[0].name, "a.b");
  AS_CHECK_INT_EQ(t.v[1].partitions, 7);
  AS_CHECK_INT_EQ(as_topicfile_add_arg(&t, "x:y.z:5", err, sizeof err), -EINVAL);
  AS_CHECK(strstr(err, "invalid topic name \"x:y.z\"") != NULL);
  AS_CHECK_INT_EQ(as_topicfile_add_arg(&t, "e.f:1000", err, sizeof err), 0);
  AS_CHECK_INT_EQ(as_topicfile_find(&t, "e.f")->partitions, 1000);
  as_topicfile_free(&t);
}

/* Each bad line: refused, its line named, the table as it was before. */
AS_TEST(bad_lines_are_refused_with_their_place) {
  static const struct {
    const char *text, *want;
  } cases[] = {
      {"ok 1 k\nnokey 3\n", ":2: malformed line"},
      {"a 0 k\n", "invalid partition count \"0\" for topic a"},
      {"a 1001 k\n", "invalid partition count \"1001\""},
      {"a +3 k\n", "invalid partition count \"+3\""},
      {"a 3x k\n", "invalid partition count \"3x\""},
      {".. 3 k\n", "invalid topic name \"..\""},
      {"a/b 3 k\n", "invalid topic name \"a/b\""},
      {"a 3 k\na 4 k\n", ":2: topic a given with 4 partitions, earlier with 3"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    as_topicfile_t t = {0};
    char err[512] = "";

    AS_CHECK_INT_EQ(load_text(&t, cases[i].text, err, sizeof err), -EINVAL);
    if (strstr(err, cases[i].want) == NULL) {
      fprintf(stderr, "case %zu: error \"%s\" lacks \"%s\"\n", i, err, cases[i].want);
      AS_CHECK(0);
    }
    as_topicfile_free(&t);
  }
}

AS_TEST(missing_file_is_enoent) {
  as_topicfile_t t = {0};
  char err[512] = "";

  AS_CHECK_INT_EQ(as_topicfile_load(&t, "/nonexistent/topics.tsv", err, sizeof err), -ENOENT);
  AS_CHECK(strstr(err, "cannot open topics file /nonexistent/topics.tsv") != NULL);
  AS_CHECK_INT_EQ(t.n, 0);
}
