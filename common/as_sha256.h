/* as_sha256: SHA-256 (FIPS 180-4) of a byte string, for the inbox's payload
 * hash: a record that reuses a known event id with other bytes must not pass
 * as a redelivery, and a cryptographic hash keeps a producer from crafting
 * such a record to collide. In Python: hashlib.sha256(value).digest().
 * Also HMAC-SHA256, for the notification webhooks' signatures.
 *
 * Ownership: nothing is kept; the caller owns both buffers. */
#ifndef AS_SHA256_H
#define AS_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define AS_SHA256_LEN 32

void as_sha256(const void *data, size_t len, uint8_t out[AS_SHA256_LEN]);

/* HMAC-SHA256 (RFC 2104) of data with key: the notification webhooks'
 * signature. In Python: hmac.new(key, data, hashlib.sha256).digest(). */
void as_sha256_hmac(const void *key, size_t klen, const void *data, size_t len,
                    uint8_t out[AS_SHA256_LEN]);

#endif
