/* as_topicfile: parses the topics table; see as_topicfile.h. Moved here
 * from as-broker unchanged in what it accepts, so that as-broker and
 * as-topics cannot disagree about a line. */
#include "as_topicfile.h"

#include "as_int.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Kafka accepts [A-Za-z0-9._-], at most 249 chars, and not "." or "..". */
static bool topicfile_name_valid(const char *name) {
  size_t len = strlen(name);

  if (len == 0 || len > AS_TOPICFILE_MAX_NAME) return false;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return false;
  return strspn(name,
                "abcdefghijklmnopqrstuvwxyz"
                "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                "0123456789._-") == len;
}

const as_topicfile_entry_t *as_topicfile_find(const as_topicfile_t *t, const char *name) {
  for (size_t i = 0; i < t->n; i++)
    if (strcmp(t->v[i].name, name) == 0) return &t->v[i];
  return NULL;
}

static int topicfile_grow(as_topicfile_t *t) {
  size_t cap = t->cap ? t->cap * 2 : 16;
  as_topicfile_entry_t *v = realloc(t->v, cap * sizeof(*v));

  if (v == NULL) return -ENOMEM;
  t->v = v;
  t->cap = cap;
  return 0;
}

/* Adds one validated topic. The same topic twice with the same count is
 * harmless (a test adding a file topic again); with another count it is a
 * contradiction we refuse. `where` names the source for the error text. */
static int topicfile_add(as_topicfile_t *t, const char *name, const char *parts, const char *where,
                         char *err, size_t errlen) {
  const as_topicfile_entry_t *dup;
  long long v;

  if (!topicfile_name_valid(name)) {
    as_err_set(err, errlen,
               "%s: invalid topic name \"%s\"\n"
               "hint: use 1..249 of [A-Za-z0-9._-], not \".\" or \"..\"",
               where, name);
    return -EINVAL;
  }
  if (as_int_parse(parts, 0, 1, AS_TOPICFILE_MAX_PARTITIONS, &v) != 0) {
    as_err_set(err, errlen,
               "%s: invalid partition count \"%s\" for topic %s\n"
               "hint: use an integer in 1..%d",
               where, parts, name, AS_TOPICFILE_MAX_PARTITIONS);
    return -EINVAL;
  }
  int n = (int)v;
  dup = as_topicfile_find(t, name);
  if (dup != NULL) {
    if (dup->partitions == n) return 0;
    as_err_set(err, errlen, "%s: topic %s given with %d partitions, earlier with %d", where, name,
               n, dup->partitions);
    return -EINVAL;
  }
  if (t->n == t->cap && topicfile_grow(t) != 0) goto oom;
  t->v[t->n].name = strdup(name);
  if (t->v[t->n].name == NULL) goto oom;
  t->v[t->n++].partitions = n;
  return 0;
oom:
  as_err_set(err, errlen, "out of memory");
  return -ENOMEM;
}

void as_topicfile_free(as_topicfile_t *t) {
  for (size_t i = 0; i < t->n; i++) free(t->v[i].name);
  free(t->v);
  *t = (as_topicfile_t){0};
}

/* One line: blank and `#` lines are skipped; otherwise at least
 * `name partitions key` must be there (the key column is what the rest of
 * the fleet documents, so a line without it is a broken line). */
static int topicfile_parse_line(as_topicfile_t *t, char *line, const char *where, char *err,
                                size_t errlen) {
  char *save = NULL;
  const char *sep = " \t\r\n";
  char *name = strtok_r(line, sep, &save);
  char *parts, *key;

  if (name == NULL || name[0] == '#') return 0;
  parts = strtok_r(NULL, sep, &save);
  key = parts ? strtok_r(NULL, sep, &save) : NULL;
  if (key == NULL) {
    as_err_set(err, errlen,
               "%s: malformed line\n"
               "detail: expected `name partitions key [description]`",
               where);
    return -EINVAL;
  }
  return topicfile_add(t, name, parts, where, err, errlen);
}

int as_topicfile_load(as_topicfile_t *t, const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "r");
  char *line = NULL, where[PATH_MAX + 32];
  size_t cap = 0;
  long lineno = 0;
  int rc = 0;

  if (f == NULL) {
    rc = -errno;
    as_err_set(err, errlen, "cannot open topics file %s: %s", path, strerror(-rc));
    return rc;
  }
  while (rc == 0 && getline(&line, &cap, f) != -1) {
    snprintf(where, sizeof(where), "%s:%ld", path, ++lineno);
    rc = topicfile_parse_line(t, line, where, err, errlen);
  }
  if (rc == 0 && ferror(f)) {
    as_err_set(err, errlen, "error reading %s", path);
    rc = -EIO;
  }
  free(line);
  fclose(f);
  return rc;
}

/* `NAME:PARTITIONS`; names cannot hold ':', so split at the last. */
int as_topicfile_add_arg(as_topicfile_t *t, const char *arg, char *err, size_t errlen) {
  char *copy = strdup(arg), *colon;
  int rc = -EINVAL;

  if (copy == NULL) {
    as_err_set(err, errlen, "out of memory");
    return -ENOMEM;
  }
  colon = strrchr(copy, ':');
  if (colon == NULL)
    as_err_set(err, errlen, "--topic %s: expected NAME:PARTITIONS", arg);
  else {
    *colon = '\0';
    rc = topicfile_add(t, copy, colon + 1, "--topic", err, errlen);
  }
  free(copy);
  return rc;
}
