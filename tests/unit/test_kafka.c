/* Unit tests for as_kafka's size check: the producer's message.max.bytes as
 * the environment sets it (librdkafka's default otherwise), which the
 * worker holds AS_DLQ_MAX_BYTES and every event to before it starts. */
#include <errno.h>
#include <stdlib.h>

#include "as_kafka.h"
#include "as_test.h"

AS_TEST(producer_max_bytes_defaults_to_librdkafka) {
  char err[256] = "";
  long long v = 0;
  unsetenv("AS_RDKAFKA_MESSAGE_MAX_BYTES");
  AS_CHECK_INT_EQ(as_kafka_producer_max_bytes(&v, err, sizeof err), 0);
  AS_CHECK_INT_EQ(v, 1000000);
}

AS_TEST(producer_max_bytes_follows_the_pass_through) {
  char err[256] = "";
  long long v = 0;
  setenv("AS_RDKAFKA_MESSAGE_MAX_BYTES", "3000000", 1);
  AS_CHECK_INT_EQ(as_kafka_producer_max_bytes(&v, err, sizeof err), 0);
  AS_CHECK_INT_EQ(v, 3000000);
}

AS_TEST(producer_max_bytes_refuses_a_bad_value) {
  char err[256] = "";
  long long v = 0;
  setenv("AS_RDKAFKA_MESSAGE_MAX_BYTES", "lots", 1);
  AS_CHECK_INT_EQ(as_kafka_producer_max_bytes(&v, err, sizeof err), -EINVAL);
  AS_CHECK(err[0] != '\0');
}
