/* as_http: the worker's tiny HTTP/1.1 listener for probes and metrics.
 *
 * It serves GET (and HEAD) with one response per connection ("Connection:
 * close"); anything else gets 405, a request head over 8 KiB or not complete
 * within the idle timeout (5 s) gets 400/408 and the connection closed, and
 * it keeps at most max_connections open (64). It is for
 * /healthz, /readyz and /metrics on a loopback or cluster-internal port, not
 * for the internet.
 *
 * Ownership: as_http_t is owned by the caller from as_http_start until the
 * done callback of as_http_close has run (handle memory is freed only after
 * every libuv handle is closed). The route callback hands ownership of the
 * malloc'd body to the listener, which frees it after the write. */
#ifndef AS_HTTP_H
#define AS_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct as_http as_http_t;

typedef struct as_http_response {
  int status;               /* 200, 404, 503 ... */
  const char *content_type; /* static string */
  char *body;               /* malloc'd; taken by the listener; may be NULL */
  size_t body_len;
} as_http_response_t;

/* Called on the loop thread for each complete request; path excludes the
 * query string. Must fill resp; on allocation failure leave body NULL and set
 * status 500. */
typedef void (*as_http_route_cb)(void *arg, const char *method, const char *path,
                                 as_http_response_t *resp);

/* Binds addr:port (port 0 = ephemeral) and starts listening. Returns NULL on
 * failure with the reason in err; the half-made listener handle is then
 * released by the loop's next run, so run the loop before uv_loop_close.
 * Sets SIGPIPE to SIG_IGN if it is SIG_DFL (a peer resetting mid-write must
 * not kill the service). */
as_http_t *as_http_start(uv_loop_t *loop, const char *addr, int port, as_http_route_cb cb,
                         void *arg, char *err, size_t errlen);

/* The bound port (useful with port 0). */
int as_http_port(const as_http_t *h);

/* The idle timeout (default 5000 ms) for connections accepted from now on:
 * a request head must arrive, and the answer be read, within it. */
void as_http_set_timeout_ms(as_http_t *h, unsigned ms);

/* The most connections open at once (default 64; 0 counts as 1). At the
 * cap a new connection closes the oldest one still waiting for its request,
 * or, if every connection is being answered, is itself closed at once. */
void as_http_set_max_connections(as_http_t *h, unsigned n);

/* Connections closed by that cap so far. */
uint64_t as_http_dropped(const as_http_t *h);

/* The listener's request parser on its own, exposed for the fuzz target
 * (tests/fuzz/fuzz_http.c). buf holds len bytes of a complete request head
 * (as read, up to the blank line); its request line is NUL-terminated in
 * place and *method and *path point into buf (path without query or
 * fragment). Returns 0 for GET or HEAD, 400 for a malformed request line,
 * 405 for another method. */
int as_http_parse_request(char *buf, size_t len, char **method, char **path);

/* Stops listening, closes open connections, frees everything, then calls
 * done(arg) from a close callback. as_http_close(NULL, ...) calls nothing. */
void as_http_close(as_http_t *h, void (*done)(void *arg), void *arg);

#endif
