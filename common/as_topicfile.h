/* as_topicfile: the topics table (proto/topics.tsv) read at run time by
 * the tools that put topics on a broker: as-broker (the mock cluster) and
 * as-topics (any real cluster). The workers get the same table compiled in
 * (the generated as_topics.h); this is its run-time reader, so that a
 * deployment can point a tool at its own copy of the file.
 *
 * A line is `name partitions key [consumers description...]`, tab or space
 * separated; blank and `#` lines are skipped. Names follow Kafka's rule
 * (1..249 of [A-Za-z0-9._-], not "." or ".."), counts are 1..1000. The same
 * topic twice with the same count is accepted once; with another count it is
 * refused (a contradiction, never silently resolved).
 *
 * Errors come back as -EINVAL (bad input) or -ENOMEM, -EIO, -ENOENT..., with
 * the text in (err, errlen): one line, then "detail: ..." / "hint: ..."
 * lines where they help; the caller prefixes its own name.
 *
 * Ownership: as_topicfile_t owns its array and every name; release it with
 * as_topicfile_free (a zeroed one is empty and freeing it is a no-op). */
#ifndef AS_TOPICFILE_H
#define AS_TOPICFILE_H

#include <stddef.h>

#include "as_err.h"

#define AS_TOPICFILE_MAX_PARTITIONS 1000
#define AS_TOPICFILE_MAX_NAME 249 /* Kafka's own limit on topic names */

typedef struct as_topicfile_entry {
  char *name; /* owned */
  int partitions;
} as_topicfile_entry_t;

typedef struct as_topicfile {
  as_topicfile_entry_t *v; /* owned array of n entries (cap allocated) */
  size_t n;
  size_t cap;
} as_topicfile_t;

/* Adds every topic of the file at path. On error t keeps what came before
 * the bad line; the text names path:line. */
AS_MUST_CHECK int as_topicfile_load(as_topicfile_t *t, const char *path, char *err, size_t errlen);

/* Adds one topic given as `NAME:PARTITIONS` (a tool's --topic flag). */
AS_MUST_CHECK int as_topicfile_add_arg(as_topicfile_t *t, const char *arg, char *err,
                                       size_t errlen);

/* The entry named name, or NULL; borrowed from t. */
const as_topicfile_entry_t *as_topicfile_find(const as_topicfile_t *t, const char *name);

void as_topicfile_free(as_topicfile_t *t);

#endif
