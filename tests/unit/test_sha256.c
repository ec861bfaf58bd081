/* Unit tests for as_sha256: the FIPS 180-4 / NIST examples (empty, "abc",
 * the 448-bit two-block message, a million 'a'), and every length around
 * the padding boundaries (55, 56, 63, 64, 65 bytes) against digests
 * computed with Python's hashlib. */
#include "as_sha256.h"
#include "as_test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void hex(const uint8_t d[AS_SHA256_LEN], char out[2 * AS_SHA256_LEN + 1]) {
  for (int i = 0; i < AS_SHA256_LEN; i++) snprintf(out + 2 * i, 3, "%02x", d[i]);
}

static void check(const void *p, size_t n, const char *want) {
  uint8_t d[AS_SHA256_LEN];
  char got[2 * AS_SHA256_LEN + 1];
  as_sha256(p, n, d);
  hex(d, got);
  AS_CHECK_STR_EQ(got, want);
}

AS_TEST(nist_examples) {
  check("", 0, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  check("abc", 3, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
  check(two, strlen(two), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  char *m = malloc(1000000);
  AS_CHECK(m != NULL);
  memset(m, 'a', 1000000);
  check(m, 1000000, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  free(m);
}

/* hashlib.sha256(bytes(range(n))).hexdigest() */
AS_TEST(padding_boundaries) {
  static const struct {
    size_t n;
    const char *want;
  } rows[] = {
      {55, "463eb28e72f82e0a96c0a4cc53690c571281131f672aa229e0d45ae59b598b59"},
      {56, "da2ae4d6b36748f2a318f23e7ab1dfdf45acdc9d049bd80e59de82a60895f562"},
      {63, "29af2686fd53374a36b0846694cc342177e428d1647515f078784d69cdb9e488"},
      {64, "fdeab9acf3710362bd2658cdc9a29e8f9c757fcf9811603a8c447cd1d9151108"},
      {65, "4bfd2c8b6f1eec7a2afeb48b934ee4b2694182027e6d0fc075074f2fabb31781"},
  };
  uint8_t b[65];
  for (int i = 0; i < 65; i++) b[i] = (uint8_t)i;
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) check(b, rows[i].n, rows[i].want);
}

static void check_hmac(const void *k, size_t kn, const void *p, size_t n, const char *want) {
  uint8_t d[AS_SHA256_LEN];
  char got[2 * AS_SHA256_LEN + 1];
  as_sha256_hmac(k, kn, p, n, d);
  hex(d, got);
  AS_CHECK_STR_EQ(got, want);
}

/* hmac.new(key, msg, hashlib.sha256).hexdigest(): a short key, a key longer
 * than a block (hashed first), and the empty key and message. */
AS_TEST(hmac_against_python) {
  const char *fox = "The quick brown fox jumps over the lazy dog";
  check_hmac("key", 3, fox, strlen(fox),
             "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8");
  uint8_t k[100], m[70];
  for (int i = 0; i < 100; i++) k[i] = (uint8_t)i;
  for (int i = 0; i < 70; i++) m[i] = (uint8_t)i;
  check_hmac(k, sizeof k, m, sizeof m,
             "6b6056efb95bd18c509c5d978b6af426a3a3f8cb2f130088992088c315b375bd");
  check_hmac("", 0, "", 0, "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad");
}
