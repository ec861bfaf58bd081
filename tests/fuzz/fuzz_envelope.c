/* Fuzz target for as_envelope_decode, the only place raw Kafka bytes become
 * a trusted Envelope. Seeds: tests/fuzz/corpus/envelope/ (packed envelopes
 * of several payloads, and broken ones). The Makefile links it with
 * libFuzzer (`make fuzz`) and with tests/fuzz/replay.c (`make test`). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "as_envelope.h"
#include "as_wire.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *reason = NULL;
  char detail[200] = "";
  as_envelope_t *env = as_envelope_decode(data, size, &reason, detail, sizeof detail);
  if (env) {
    /* A trusted envelope must satisfy what callers rely on. */
    if (!as_envelope_type_name(env->payload_case) || strlen(env->event_id) != 36) abort();
    /* Every string protobuf-c parsed was judged: packed again from the C
     * strings, they are all still strict UTF-8 without NUL. */
    size_t len = aftersales__v1__envelope__get_packed_size(env), at;
    uint8_t *again = malloc(len ? len : 1);
    char path[160];
    if (!again) abort();
    aftersales__v1__envelope__pack(env, again);
    if (as_wire_check_strings(&aftersales__v1__envelope__descriptor, again, len, path, sizeof path,
                              &at) != AS_WIRE_OK)
      abort();
    free(again);
    as_envelope_free(env);
  } else if (!reason || !detail[0]) {
    abort();
  } else if (strstr(detail, "malformed field")) {
    abort(); /* protobuf-c took bytes as a message that as_wire could not walk */
  }
  return 0;
}
