/* Fuzz target for as_envelope_decode, the only place raw Kafka bytes become
 * a trusted Envelope. Built two ways: with clang -fsanitize=fuzzer it is a
 * libFuzzer target (LLVMFuzzerTestOneInput); built by the Makefile it is a
 * replayer that feeds each file named on the command line (a corpus) and, with
 * no arguments, a deterministic stream of mutated valid envelopes, so that
 * `make test` runs it under ASan/UBSan on every build. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "as_envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *reason = NULL;
  char detail[200];
  as_envelope_t *env = as_envelope_decode(data, size, &reason, detail, sizeof detail);
  if (env) {
    /* A trusted envelope must satisfy what callers rely on. */
    if (!as_envelope_type_name(env->payload_case) || strlen(env->event_id) != 36) abort();
    as_envelope_free(env);
  } else if (!reason || !detail[0]) {
    abort();
  }
  return 0;
}

#ifndef AS_LIBFUZZER
static size_t seed(uint8_t *buf, size_t cap) {
  Aftersales__V1__SyntheticProbe p = AFTERSALES__V1__SYNTHETIC_PROBE__INIT;
  p.probe_id = "p-1";
  p.seq = 7;
  Aftersales__V1__Producer prod = AFTERSALES__V1__PRODUCER__INIT;
  prod.service = "fuzz";
  as_envelope_t env = AFTERSALES__V1__ENVELOPE__INIT;
  env.event_id = "0b7e8f52-3c1d-4e7a-9a55-5f2d8c1e9b10";
  env.event_type = "SyntheticProbe";
  env.schema_version = 1;
  env.case_id = "c-1";
  env.occurred_at_us = 1763900000000000LL;
  env.producer = &prod;
  env.payload_case = AFTERSALES__V1__ENVELOPE__PAYLOAD_SYNTHETIC_PROBE;
  env.synthetic_probe = &p;
  size_t n = aftersales__v1__envelope__get_packed_size(&env);
  if (n > cap) abort();
  return aftersales__v1__envelope__pack(&env, buf);
}

static int replay_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return -1;
  static uint8_t buf[1 << 20];
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  LLVMFuzzerTestOneInput(buf, n);
  return 0;
}

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++)
    if (replay_file(argv[i]) < 0) fprintf(stderr, "fuzz: cannot read %s\n", argv[i]);
  if (argc > 1) return 0;
  uint8_t base[512], buf[512];
  size_t n = seed(base, sizeof base);
  uint64_t x = 0x9e3779b97f4a7c15ULL;
  for (int iter = 0; iter < 200000; iter++) {
    memcpy(buf, base, n);
    size_t len = n;
    for (int k = 0; k < 1 + iter % 4; k++) { /* xorshift-driven byte flips, cuts and growth */
      x ^= x << 13, x ^= x >> 7, x ^= x << 17;
      size_t at = x % len;
      switch ((x >> 32) % 3) {
        case 0: buf[at] = (uint8_t)(x >> 40); break;
        case 1: len = at + 1; break;
        default: if (len < sizeof buf) buf[len++] = (uint8_t)(x >> 48); break;
      }
    }
    LLVMFuzzerTestOneInput(buf, len);
  }
  printf("fuzz_envelope: 200000 mutated envelopes decoded without a fault\n");
  return 0;
}
#endif
