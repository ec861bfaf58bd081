/* replay: runs a fuzz target without libFuzzer. Linked with one
 * tests/fuzz/fuzz_<name>.c into $(B)/tests/fuzz_<name> by gcc, with the
 * build's sanitizers, so that `make test` puts every target's corpus and a
 * fixed stream of mutations of it through ASan + UBSan on every run, where
 * `make fuzz` (clang, libFuzzer) explores for as long as it is given.
 *
 *   fuzz_<name> [-n MUTATIONS] PATH...
 *
 * PATH is a file or a directory of files (read in name order). Every file
 * is run once as it is, then MUTATIONS (default 20000) inputs are made from
 * them in turn by one to four xorshift-driven edits each: a byte overwritten
 * with a random one or with a byte from elsewhere in the input (which keeps
 * a text format's alphabet), a cut, a byte appended, a span copied to
 * another place or deleted. The seed is fixed, so a failure replays
 * identically. Each input is in a heap block of exactly its size, so a read
 * past its end is an ASan error rather than a read of the next input.
 * A target reports a fault by crashing (abort, a sanitizer); the exit code
 * is then not 0. */
#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_FILE_BYTES = 1 << 20, MAX_EDITS = 4, MAX_SPAN = 64 };

typedef struct {
  uint8_t *data;
  size_t len;
} input_t;

typedef struct {
  input_t *v;
  size_t n, cap;
} corpus_t;

static int corpus_add_file(corpus_t *c, const char *path) {
  FILE *f = fopen(path, "rb");
  uint8_t *buf = malloc(MAX_FILE_BYTES);
  size_t n;

  if (f == NULL || buf == NULL) {
    fprintf(stderr, "replay: %s: %s\n", path, f ? "out of memory" : strerror(errno));
    if (f) fclose(f);
    free(buf);
    return -1;
  }
  n = fread(buf, 1, MAX_FILE_BYTES, f);
  if (ferror(f)) {
    fprintf(stderr, "replay: %s: read failed\n", path);
    fclose(f);
    free(buf);
    return -1;
  }
  fclose(f);
  uint8_t *fit = realloc(buf, n ? n : 1);
  if (fit != NULL) buf = fit;
  if (c->n == c->cap) {
    size_t cap = c->cap ? 2 * c->cap : 16;
    input_t *v = realloc(c->v, cap * sizeof *v);
    if (v == NULL) {
      free(buf);
      return -1;
    }
    c->v = v;
    c->cap = cap;
  }
  c->v[c->n].data = buf;
  c->v[c->n++].len = n;
  return 0;
}

static int by_name(const struct dirent **a, const struct dirent **b) {
  return strcmp((*a)->d_name, (*b)->d_name);
}

static int not_hidden(const struct dirent *d) {
  return d->d_name[0] != '.';
}

static int corpus_add(corpus_t *c, const char *path) {
  struct stat st;
  struct dirent **names;
  int n, rc = 0;

  if (stat(path, &st) < 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  if (!S_ISDIR(st.st_mode)) return corpus_add_file(c, path);
  if ((n = scandir(path, &names, not_hidden, by_name)) < 0) {
    fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
    return -1;
  }
  for (int i = 0; i < n; i++) {
    char file[4096];
    snprintf(file, sizeof file, "%s/%s", path, names[i]->d_name);
    if (rc == 0 && corpus_add_file(c, file) < 0) rc = -1;
    free(names[i]);
  }
  free(names);
  return rc;
}

/* Runs len bytes of src in a block of exactly that size. */
static void run(const uint8_t *src, size_t len) {
  uint8_t *in = malloc(len ? len : 1);

  if (in == NULL) abort();
  memcpy(in, src, len);
  LLVMFuzzerTestOneInput(in, len);
  free(in);
}

static uint64_t next(uint64_t *x) {
  *x ^= *x << 13;
  *x ^= *x >> 7;
  *x ^= *x << 17;
  return *x;
}

/* One to four edits of buf (len bytes, room for cap). Returns the new length. */
static size_t mutate(uint8_t *buf, size_t len, size_t cap, uint64_t *x, int edits) {
  for (int k = 0; k < edits; k++) {
    uint64_t r = next(x);
    size_t at = len ? r % len : 0, span = 1 + (r >> 24) % MAX_SPAN;

    switch ((r >> 40) % 6) {
      case 0: /* a random byte */
        if (len) buf[at] = (uint8_t)(r >> 48);
        break;
      case 1: /* a byte of the input itself */
        if (len) buf[at] = buf[(r >> 48) % len];
        break;
      case 2: /* cut */
        len = at;
        break;
      case 3: /* grow */
        if (len < cap) buf[len++] = (uint8_t)(r >> 48);
        break;
      case 4: { /* copy a span to another place, shifting the rest */
        size_t from = len ? (r >> 48) % len : 0;
        if (span > len - from) span = len - from;
        if (span > cap - len) span = cap - len;
        uint8_t tmp[MAX_SPAN];
        memcpy(tmp, buf + from, span);
        memmove(buf + at + span, buf + at, len - at);
        memcpy(buf + at, tmp, span);
        len += span;
        break;
      }
      default: /* delete a span */
        if (span > len - at) span = len - at;
        memmove(buf + at, buf + at + span, len - at - span);
        len -= span;
        break;
    }
  }
  return len;
}

int main(int argc, char **argv) {
  const char *name = strrchr(argv[0], '/') ? strrchr(argv[0], '/') + 1 : argv[0];
  corpus_t c = {0};
  long mutations = 20000;
  int i = 1;

  if (argc > 2 && strcmp(argv[1], "-n") == 0) {
    char *end;
    mutations = strtol(argv[2], &end, 10);
    if (*end != '\0' || mutations < 0) {
      fprintf(stderr, "%s: -n takes a count\n", name);
      return 2;
    }
    i = 3;
  }
  if (i == argc) {
    fprintf(stderr, "usage: %s [-n MUTATIONS] CORPUS_FILE_OR_DIR...\n", name);
    return 2;
  }
  for (; i < argc; i++)
    if (corpus_add(&c, argv[i]) < 0) return 2;
  if (c.n == 0) {
    fprintf(stderr, "%s: empty corpus\n", name);
    return 2;
  }
  for (size_t j = 0; j < c.n; j++) run(c.v[j].data, c.v[j].len);

  uint64_t x = 0x9e3779b97f4a7c15ULL;
  size_t cap = 0;
  for (size_t j = 0; j < c.n; j++)
    if (c.v[j].len > cap) cap = c.v[j].len;
  cap += MAX_EDITS * MAX_SPAN;
  uint8_t *buf = malloc(cap);
  if (buf == NULL) return 2;
  for (long m = 0; m < mutations; m++) {
    const input_t *seed = &c.v[(size_t)m % c.n];
    memcpy(buf, seed->data, seed->len);
    run(buf, mutate(buf, seed->len, cap, &x, 1 + (int)(m % MAX_EDITS)));
  }
  printf("%s: %zu corpus files and %ld mutations without a fault\n", name, c.n, mutations);
  free(buf);
  for (size_t j = 0; j < c.n; j++) free(c.v[j].data);
  free(c.v);
  return 0;
}
