/* as_process: what a process says about itself: its version and commit
 * (--version, the as_build_info gauge) and the standard Prometheus process
 * metrics (process_cpu_seconds_total, process_resident_memory_bytes,
 * process_open_fds, process_max_fds, process_start_time_seconds), read
 * from the kernel when /metrics is scraped, never on the batch path.
 *
 * Ownership: as_process_t is the caller's (plain struct, nothing to free);
 * the series it points to belong to the registry passed to
 * as_process_init. */
#ifndef AS_PROCESS_H
#define AS_PROCESS_H

#include "as_metrics.h"

/* Defined by the generated $(B)/gen/as_version.c (scripts/gen_version.sh):
 * the VERSION file and the git commit the binary was built from. */
extern const char as_version[];
extern const char as_commit[];

typedef struct as_process {
  as_gauge_t *cpu, *rss, *fds, *max_fds, *start;
} as_process_t;

/* Creates the process series and as_build_info{version,commit} (always 1)
 * in m. Returns 0 or -ENOMEM. */
AS_MUST_CHECK int as_process_init(as_process_t *p, as_metrics_t *m);

/* Reads the current figures into the series; a figure the kernel does not
 * give keeps its last value. */
void as_process_update(as_process_t *p);

#endif
