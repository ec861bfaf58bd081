/* as_process: build information and process metrics with the names
 * Prometheus' own client libraries use, so that the usual dashboards and
 * alerts (memory, descriptors near the limit) work unchanged. Linux only:
 * /proc/self/statm and /proc/self/fd. */
#include "as_process.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

int as_process_init(as_process_t *p, as_metrics_t *m) {
  char labels[160];

  snprintf(labels, sizeof labels, "version=\"%s\",commit=\"%s\"", as_version, as_commit);
  as_gauge_t *info = as_metrics_gauge(m, "as_build_info",
                                      "Always 1; the labels say which build is running.", labels);
  p->cpu = as_metrics_float_counter(m, "process_cpu_seconds_total",
                                    "User and system CPU time spent, in seconds.", NULL);
  p->rss =
      as_metrics_gauge(m, "process_resident_memory_bytes", "Resident memory size in bytes.", NULL);
  p->fds = as_metrics_gauge(m, "process_open_fds", "Open file descriptors.", NULL);
  p->max_fds = as_metrics_gauge(
      m, "process_max_fds", "Most file descriptors the process may open (RLIMIT_NOFILE).", NULL);
  p->start = as_metrics_gauge(m, "process_start_time_seconds",
                              "Start time of the process since the Unix epoch, in seconds.", NULL);
  if (!info || !p->cpu || !p->rss || !p->fds || !p->max_fds || !p->start) return -ENOMEM;
  as_gauge_set(info, 1);
  as_gauge_set(p->start, (double)time(NULL));
  as_process_update(p);
  return 0;
}

static long long open_fds(void) {
  DIR *d = opendir("/proc/self/fd");
  long long n = 0;

  if (d == NULL) return -1;
  while (readdir(d) != NULL) n++;
  closedir(d);
  return n - 3; /* ".", ".." and the directory's own descriptor */
}

static long long resident_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  long long size, pages = -1;

  if (f == NULL) return -1;
  if (fscanf(f, "%lld %lld", &size, &pages) != 2) pages = -1;
  fclose(f);
  return pages < 0 ? -1 : pages * sysconf(_SC_PAGESIZE);
}

void as_process_update(as_process_t *p) {
  struct rusage ru;
  struct rlimit rl;
  long long n;

  if (getrusage(RUSAGE_SELF, &ru) == 0)
    as_gauge_set(p->cpu, (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
                             (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6);
  if ((n = resident_bytes()) >= 0) as_gauge_set(p->rss, (double)n);
  if ((n = open_fds()) >= 0) as_gauge_set(p->fds, (double)n);
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
    as_gauge_set(p->max_fds, rl.rlim_cur == RLIM_INFINITY ? -1 : (double)rl.rlim_cur);
}
