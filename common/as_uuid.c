/* as_uuid: random (v4) and name-based (v5, SHA-1, from libuuid) UUIDs. */
#include "as_uuid.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <uuid/uuid.h>

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

/* The project's root namespace, uuid5(NAMESPACE_URL, "urn:aftersales"):
 * a string namespace ns names the namespace uuid5(ROOT, ns), so ids are
 * plain RFC 9562 v5 UUIDs that any uuid5 implementation recomputes (see
 * as_uuid.h). */
static const uuid_t ROOT = {0xa1, 0xd6, 0xb2, 0x85, 0xf6, 0xcf, 0x56, 0xa1,
                            0xa5, 0x05, 0x0d, 0x36, 0x55, 0xa0, 0x64, 0xfa};

void as_uuid_v5(char out[AS_UUID_STRLEN + 1], const char *ns, const void *name, size_t len) {
  uuid_t nsu, b;
  uuid_generate_sha1(nsu, ROOT, ns, strlen(ns));
  uuid_generate_sha1(b, nsu, name, len);
  format(out, b);
}

void as_uuid_inspection_task(char out[AS_UUID_STRLEN + 1], const char *case_id, const char *kind) {
  char name[512];
  int n = snprintf(name, sizeof name, "%s|%s", case_id, kind);
  as_uuid_v5(out, "aftersales.inspection_task", name,
             n < 0                     ? 0
             : (size_t)n < sizeof name ? (size_t)n
                                       : sizeof name - 1);
}
bool as_uuid_valid(const char *s) {
  if (!s || strlen(s) != AS_UUID_STRLEN) return false;
  for (int i = 0; i < AS_UUID_STRLEN; i++) {
    char c = s[i];
    bool dash = (i == 8 || i == 13 || i == 18 || i == 23);
    if (dash ? c != '-'
             : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')))
      return false;
  }
  return true;
}

void as_uuid_canonicalise(char *s) {
  for (; *s; s++)
    if (*s >= 'A' && *s <= 'F') *s = (char)(*s - 'A' + 'a');
}
