/* as_uuid: random (v4) and name-based (v8, MurmurHash3 x64-128) UUIDs. */
#include "as_uuid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static int fill_random(void *buf, size_t len) {
  uint8_t *p = buf;
  while (len > 0) {
    ssize_t n = getrandom(p, len, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static void format(char out[AS_UUID_STRLEN + 1], const uint8_t b[16]) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  for (int i = 0; i < 16; i++) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out[o++] = '-';
    out[o++] = hex[b[i] >> 4];
    out[o++] = hex[b[i] & 15];
  }
  out[o] = '\0';
}

static void set_version(uint8_t b[16], unsigned version) {
  b[6] = (uint8_t)((b[6] & 0x0f) | (version << 4));
  b[8] = (uint8_t)((b[8] & 0x3f) | 0x80); /* RFC 9562 variant */
}

int as_uuid_v4(char out[AS_UUID_STRLEN + 1]) {
  uint8_t b[16];
  int rc = fill_random(b, sizeof b);
  if (rc < 0) return rc;
  set_version(b, 4);
  format(out, b);
  return 0;
}

int as_uuid_trace_id(char out[33]) {
  static const char hex[] = "0123456789abcdef";
  uint8_t b[16];
  int rc = fill_random(b, sizeof b);
  if (rc < 0) return rc;
  for (int i = 0; i < 16; i++) {
    out[2 * i] = hex[b[i] >> 4];
    out[2 * i + 1] = hex[b[i] & 15];
  }
  out[32] = '\0';
  return 0;
}

/* MurmurHash3 x64-128 (Austin Appleby, public domain), written from its
 * published description. Not cryptographic: the ids only need to be stable
 * and collision-free for honest inputs; uniqueness is still enforced by the
 * database. */
static uint64_t rotl64(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

static uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ULL;
  k ^= k >> 33;
  return k;
}

static uint64_t load64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--) v = (v << 8) | p[i];
  return v;
}

static void murmur3_128(const uint8_t *data, size_t len, uint64_t seed, uint64_t out[2]) {
  const uint64_t c1 = 0x87c37b91114253d5ULL, c2 = 0x4cf5ad432745937fULL;
  uint64_t h1 = seed, h2 = seed;
  size_t nblocks = len / 16;
  for (size_t i = 0; i < nblocks; i++) {
    uint64_t k1 = load64(data + i * 16), k2 = load64(data + i * 16 + 8);
    k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1;
    h1 = rotl64(h1, 27); h1 += h2; h1 = h1 * 5 + 0x52dce729;
    k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2;
    h2 = rotl64(h2, 31); h2 += h1; h2 = h2 * 5 + 0x38495ab5;
  }
  const uint8_t *tail = data + nblocks * 16;
  uint64_t k1 = 0, k2 = 0;
  size_t rem = len & 15;
  for (size_t i = rem; i > 8; i--) k2 ^= (uint64_t)tail[i - 1] << ((i - 9) * 8);
  if (rem > 8) { k2 *= c2; k2 = rotl64(k2, 33); k2 *= c1; h2 ^= k2; }
  for (size_t i = rem < 8 ? rem : 8; i > 0; i--) k1 ^= (uint64_t)tail[i - 1] << ((i - 1) * 8);
  if (rem > 0) { k1 *= c1; k1 = rotl64(k1, 31); k1 *= c2; h1 ^= k1; }
  h1 ^= (uint64_t)len; h2 ^= (uint64_t)len;
  h1 += h2; h2 += h1;
  h1 = fmix64(h1); h2 = fmix64(h2);
  h1 += h2; h2 += h1;
  out[0] = h1;
  out[1] = h2;
}

void as_uuid_v8(char out[AS_UUID_STRLEN + 1], const char *ns, const void *name, size_t len) {
  /* Seed with the namespace's own hash so "a"+"bc" and "ab"+"c" differ. */
  uint64_t seed[2], h[2];
  murmur3_128((const uint8_t *)ns, strlen(ns), 0x61667465u, seed);
  murmur3_128(name, len, seed[0] ^ seed[1], h);
  uint8_t b[16];
  for (int i = 0; i < 8; i++) {
    b[i] = (uint8_t)(h[0] >> (56 - 8 * i));
    b[8 + i] = (uint8_t)(h[1] >> (56 - 8 * i));
  }
  set_version(b, 8);
  format(out, b);
}

bool as_uuid_valid(const char *s) {
  if (!s || strlen(s) != AS_UUID_STRLEN) return false;
  for (int i = 0; i < AS_UUID_STRLEN; i++) {
    char c = s[i];
    bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  }
  return true;
}

void as_uuid_canonicalise(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'F') *s = (char)(*s - 'A' + 'a');
}
