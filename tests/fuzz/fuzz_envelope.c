/* Fuzz target for as_envelope_decode, the only place raw Kafka bytes become
 * a trusted Envelope. Seeds: tests/fuzz/corpus/envelope/ (packed envelopes
 * of several payloads, and broken ones). The Makefile links it with
 * libFuzzer (`make fuzz`) and with tests/fuzz/replay.c (`make test`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_envelope.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *reason = NULL;
  char detail[200] = "";
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
