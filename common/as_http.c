/* as_http: the probe and metrics listener, on the service's libuv loop.
 * Each connection gets one request and one response: read until the blank
 * line that ends the head (at most HEAD_MAX bytes), answer, shut the write
 * side down, then keep reading and discarding until the peer closes or the
 * timer fires, so that closing with unread input does not reset the
 * connection before the peer has read the answer. A connection owns two
 * handles (socket and timer) and is freed when both have closed; the
 * listener counts every handle it opened so that as_http_close can report
 * "done" only after the last close callback.
 *
 * At most max_conns connections are open at once: each costs a descriptor,
 * and a worker under the common limit of 1,024 that lets idle clients take
 * them all can no longer answer its probes (nor open a database or broker
 * socket). At the cap, a new connection closes the oldest one still waiting
 * for its request (a probe sends its request at once, so the idle one is the
 * one to go); if every slot is busy answering, the new one is closed at
 * once. Both are counted (as_http_dropped). */
#include "as_http.h"

#include "as_err.h"

#include <errno.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
  HEAD_MAX = 8192,
  BACKLOG = 64,
  DEFAULT_TIMEOUT_MS = 5000,
  DEFAULT_MAX_CONNS = 64,
  RESP_HEAD_MAX = 512
};

static const char DEFAULT_TYPE[] = "text/plain; charset=utf-8";

typedef struct conn {
  struct conn *prev, *next;
  as_http_t *h;
  uv_tcp_t tcp;
  uv_timer_t timer;
  uv_write_t wreq;
  uv_shutdown_t sreq;
  int open;       /* this connection's handles not yet closed */
  bool closing;   /* uv_close called */
  bool responded; /* response written or being written; input is discarded */
  bool shut;      /* our write side is shut down */
  bool eof;       /* the peer's write side is shut down */
  char *body;     /* owned response body, or NULL for text */
  size_t body_len;
  char text[32]; /* body of our own answers (400, 405, 408) */
  char head[RESP_HEAD_MAX];
  size_t len;
  char buf[HEAD_MAX];
} conn_t;

struct as_http {
  uv_loop_t *loop;
  uv_tcp_t listener;
  as_http_route_cb cb;
  void *arg;
  conn_t *conns;
  unsigned handles; /* every handle opened and not yet closed */
  unsigned live;    /* connections not closing */
  unsigned max_conns;
  unsigned timeout_ms;
  uint64_t dropped; /* connections closed by the cap */
  int port;
  bool closing;
  void (*done)(void *arg);
  void *done_arg;
};

static void on_conn_timeout(uv_timer_t *t);

/* --- handle bookkeeping --------------------------------------------------- */

/* Frees the listener once closing and the last handle is gone; done runs
 * after the free, so done may free whatever arg points to. */
static void handle_closed(as_http_t *h) {
  void (*done)(void *) = h->done;
  void *arg = h->done_arg;

  if (--h->handles > 0 || !h->closing) return;
  free(h);
  if (done != NULL) done(arg);
}

static void on_listener_closed(uv_handle_t *hd) {
  handle_closed(hd->data);
}

static void conn_free(conn_t *c) {
  if (c->prev != NULL)
    c->prev->next = c->next;
  else
    c->h->conns = c->next;
  if (c->next != NULL) c->next->prev = c->prev;
  free(c->body);
  free(c);
}

static void on_conn_handle_closed(uv_handle_t *hd) {
  conn_t *c = hd->data;
  as_http_t *h = c->h;

  if (--c->open == 0) conn_free(c);
  handle_closed(h);
}

/* Idempotent; pending write and shutdown callbacks still run (with
 * UV_ECANCELED) before the close callbacks free the connection. */
static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  c->h->live--;
  uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
  uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

/* --- responding ------------------------------------------------------------ */

static const char *reason(int status) {
  static const struct {
    int status;
    const char *text;
  } reasons[] = {
      {200, "OK"},
      {204, "No Content"},
      {400, "Bad Request"},
      {404, "Not Found"},
      {405, "Method Not Allowed"},
      {408, "Request Timeout"},
      {429, "Too Many Requests"},
      {500, "Internal Server Error"},
      {503, "Service Unavailable"},
  };

  for (size_t i = 0; i < sizeof reasons / sizeof reasons[0]; i++)
    if (reasons[i].status == status) return reasons[i].text;
  return "Unknown";
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  conn_t *c = req->data;

  c->shut = true;
  /* Otherwise linger: reads are discarded until EOF or the timer. */
  if (status < 0 || c->eof) conn_close(c);
}

static void on_write(uv_write_t *req, int status) {
  conn_t *c = req->data;

  if (status < 0 || c->closing) {
    conn_close(c);
    return;
  }
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) != 0) conn_close(c);
}

/* Sends the prepared head and body; the timer now bounds the write and the
 * lingering close instead of the request. */
static void send_response(conn_t *c, bool with_body) {
  uv_buf_t bufs[2];
  char *body = c->body != NULL ? c->body : c->text;

  c->responded = true;
  bufs[0] = uv_buf_init(c->head, (unsigned)strlen(c->head));
  bufs[1] = uv_buf_init(body, (unsigned)c->body_len);
  uv_timer_start(&c->timer, on_conn_timeout, c->h->timeout_ms, 0);
  c->wreq.data = c;
  if (uv_write(&c->wreq, (uv_stream_t *)&c->tcp, bufs, with_body && c->body_len > 0 ? 2 : 1,
               on_write) != 0)
    conn_close(c);
}

static void format_head(conn_t *c, int status, const char *type) {
  int n = snprintf(c->head, sizeof c->head,
                   "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%s"
                   "Connection: close\r\n\r\n",
                   status, reason(status), type, c->body_len,
                   status == 405 ? "Allow: GET, HEAD\r\n" : "");

  /* Only an absurd content type can overflow; fall back rather than send a
   * cut head. */
  if (n < 0 || (size_t)n >= sizeof c->head) format_head(c, status, DEFAULT_TYPE);
}

/* Our own answers: 400, 405, 408. */
static void respond_static(conn_t *c, int status) {
  snprintf(c->text, sizeof c->text, "%s\n", reason(status));
  c->body_len = strlen(c->text);
  format_head(c, status, DEFAULT_TYPE);
  send_response(c, true);
}

static void respond_route(conn_t *c, bool head_only, as_http_response_t *r) {
  int status = r->status >= 100 && r->status <= 999 ? r->status : 500;

  c->body = r->body;
  c->body_len = r->body != NULL ? r->body_len : 0;
  format_head(c, status, r->content_type != NULL ? r->content_type : DEFAULT_TYPE);
  send_response(c, !head_only);
}

/* --- parsing --------------------------------------------------------------- */

static bool is_tchar(char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
         (ch != '\0' && strchr("!#$%&'*+-.^_`|~", ch) != NULL);
}

/* Splits "METHOD SP TARGET SP HTTP/1.x" (NUL-terminated in place) into
 * method and path (query and fragment cut off). Returns 0 or 400. */
static int parse_request_line(char *line, char **method, char **path) {
  char *sp1 = strchr(line, ' '), *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
  const char *version = sp2 != NULL ? sp2 + 1 : "";

  if (sp1 == NULL || sp2 == NULL || sp1 == line || sp1[1] != '/') return 400;
  if (strncmp(version, "HTTP/1.", 7) != 0 || version[7] < '0' || version[7] > '9' ||
      version[8] != '\0')
    return 400;
  for (const char *p = line; p < sp1; p++)
    if (!is_tchar(*p)) return 400;
  for (const char *p = sp1 + 1; p < sp2; p++)
    if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7F) return 400;
  *sp1 = *sp2 = '\0';
  sp1[1 + strcspn(sp1 + 1, "?#")] = '\0';
  *method = line;
  *path = sp1 + 1;
  return 0;
}

/* Where the head ends ("\n\n" or "\n\r\n", bare LF tolerated as RFC 9112
 * allows), searching from `from`; 0 if not yet. */
static size_t head_end(const char *buf, size_t len, size_t from) {
  for (size_t i = from; i + 1 < len; i++) {
    if (buf[i] != '\n') continue;
    if (buf[i + 1] == '\n') return i + 2;
    if (buf[i + 1] == '\r' && i + 2 < len && buf[i + 2] == '\n') return i + 3;
  }
  return 0;
}

int as_http_parse_request(char *buf, size_t len, char **method, char **path) {
  char *nl = memchr(buf, '\n', len);
  size_t n;

  if (nl == NULL) /* not a head; the listener passes only complete ones */
    return 400;
  n = (size_t)(nl - buf);
  if (n > 0 && buf[n - 1] == '\r') n--;
  buf[n] = '\0';
  if (memchr(buf, '\0', n) != NULL || parse_request_line(buf, method, path) != 0) return 400;
  if (strcmp(*method, "HEAD") != 0 && strcmp(*method, "GET") != 0) return 405;
  return 0;
}

static void handle_request(conn_t *c) {
  as_http_response_t r = {.status = 500, .content_type = NULL, .body = NULL, .body_len = 0};
  char *method, *path;
  int status = as_http_parse_request(c->buf, c->len, &method, &path);
  bool head_only;

  if (status != 0) {
    respond_static(c, status);
    return;
  }
  head_only = strcmp(method, "HEAD") == 0;
  c->h->cb(c->h->arg, method, path, &r);
  if (c->closing) { /* the route closed the listener */
    free(r.body);
    return;
  }
  respond_route(c, head_only, &r);
}

/* --- connection events ------------------------------------------------------ */

static void on_conn_timeout(uv_timer_t *t) {
  conn_t *c = t->data;

  if (c->responded)
    conn_close(c); /* write or lingering close took too long */
  else
    respond_static(c, 408);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf) {
  conn_t *c = hd->data;

  (void)suggested;
  if (c->responded) /* discarding */
    *buf = uv_buf_init(c->buf, sizeof c->buf);
  else
    *buf = uv_buf_init(c->buf + c->len, (unsigned)(sizeof c->buf - c->len));
}

static void on_eof(conn_t *c) {
  c->eof = true;
  uv_read_stop((uv_stream_t *)&c->tcp);
  /* A peer that gives up before a whole head gets nothing; after the
   * response, EOF ends the lingering close. */
  if (!c->responded || c->shut) conn_close(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  size_t from;

  (void)buf;
  if (nread == UV_EOF) {
    on_eof(c);
    return;
  }
  if (nread < 0) {
    conn_close(c);
    return;
  }
  if (c->responded || nread == 0) return;
  from = c->len > 2 ? c->len - 2 : 0; /* a terminator may straddle reads */
  c->len += (size_t)nread;
  if (head_end(c->buf, c->len, from) > 0)
    handle_request(c);
  else if (c->len == sizeof c->buf)
    respond_static(c, 400);
}

/* Closes the oldest connection still waiting for its request (the list is
 * newest first), if there is one. */
static void make_room(as_http_t *h) {
  conn_t *idle = NULL;

  for (conn_t *c = h->conns; c != NULL; c = c->next)
    if (!c->closing && !c->responded) idle = c;
  if (idle == NULL) return;
  h->dropped++;
  conn_close(idle);
}

static void on_connection(uv_stream_t *server, int status) {
  as_http_t *h = server->data;
  conn_t *c;

  if (status < 0 || h->closing) return;
  if (h->live >= h->max_conns) make_room(h);
  /* Without a conn we cannot accept, and libuv then pauses the listener
   * until we do; out of memory, the service has bigger problems. */
  if ((c = calloc(1, sizeof *c)) == NULL) return;
  c->h = h;
  h->live++;
  c->next = h->conns;
  if (h->conns != NULL) h->conns->prev = c;
  h->conns = c;
  uv_timer_init(h->loop, &c->timer); /* cannot fail */
  c->timer.data = c;
  c->open = 1;
  h->handles++;
  if (uv_tcp_init(h->loop, &c->tcp) != 0) {
    c->closing = true;
    h->live--;
    uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
    return;
  }
  c->tcp.data = c;
  c->open++;
  h->handles++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    conn_close(c);
    return;
  }
  if (h->live > h->max_conns) { /* no room made: every slot is answering */
    h->dropped++;
    conn_close(c);
    return;
  }
  uv_timer_start(&c->timer, on_conn_timeout, h->timeout_ms, 0);
}

/* --- listener --------------------------------------------------------------- */

static int make_addr(const char *addr, int port, struct sockaddr_storage *ss) {
  if (strchr(addr, ':') != NULL) return uv_ip6_addr(addr, port, (struct sockaddr_in6 *)ss);
  return uv_ip4_addr(addr, port, (struct sockaddr_in *)ss);
}

static int read_port(as_http_t *h) {
  struct sockaddr_storage ss;
  int len = sizeof ss;
  int rc = uv_tcp_getsockname(&h->listener, (struct sockaddr *)&ss, &len);

  if (rc != 0) return rc;
  if (ss.ss_family == AF_INET6)
    h->port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
  else
    h->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
  return 0;
}

/* A peer that resets while we write would otherwise kill the process with
 * SIGPIPE (libuv writes with write(2), not send(MSG_NOSIGNAL)). A handler
 * the program installed itself is left alone. */
static void ignore_sigpipe(void) {
  struct sigaction sa;

  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}

as_http_t *as_http_start(uv_loop_t *loop, const char *addr, int port, as_http_route_cb cb,
                         void *arg, char *err, size_t errlen) {
  struct sockaddr_storage ss;
  as_http_t *h = NULL;
  int rc;

  if (loop == NULL || addr == NULL || cb == NULL || port < 0 || port > 65535 ||
      make_addr(addr, port, &ss) != 0) {
    as_err_set(err, errlen, "as_http: bad listen address \"%.64s\" port %d", addr ? addr : "",
               port);
    return NULL;
  }
  ignore_sigpipe();
  if ((h = calloc(1, sizeof *h)) == NULL) {
    as_err_set(err, errlen, "as_http: out of memory");
    return NULL;
  }
  h->loop = loop;
  h->cb = cb;
  h->arg = arg;
  h->timeout_ms = DEFAULT_TIMEOUT_MS;
  h->max_conns = DEFAULT_MAX_CONNS;
  if ((rc = uv_tcp_init(loop, &h->listener)) != 0) {
    as_err_set(err, errlen, "as_http: %s", uv_strerror(rc));
    free(h);
    return NULL;
  }
  h->listener.data = h;
  h->handles = 1;
  if ((rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0)) != 0 ||
      (rc = uv_listen((uv_stream_t *)&h->listener, BACKLOG, on_connection)) != 0 ||
      (rc = read_port(h)) != 0)
    goto out;
  return h;
out:
  as_err_set(err, errlen, "as_http: listen on %s port %d: %s", addr, port, uv_strerror(rc));
  h->closing = true; /* freed by on_listener_closed, done stays NULL */
  uv_close((uv_handle_t *)&h->listener, on_listener_closed);
  return NULL;
}

int as_http_port(const as_http_t *h) {
  return h->port;
}

void as_http_set_timeout_ms(as_http_t *h, unsigned ms) {
  h->timeout_ms = ms > 0 ? ms : 1;
}

void as_http_set_max_connections(as_http_t *h, unsigned n) {
  h->max_conns = n > 0 ? n : 1;
}

uint64_t as_http_dropped(const as_http_t *h) {
  return h->dropped;
}

void as_http_close(as_http_t *h, void (*done)(void *arg), void *arg) {
  if (h == NULL || h->closing) return;
  h->closing = true;
  h->done = done;
  h->done_arg = arg;
  uv_close((uv_handle_t *)&h->listener, on_listener_closed);
  for (conn_t *c = h->conns; c != NULL; c = c->next) conn_close(c);
}
