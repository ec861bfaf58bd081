/* Unit tests for as_http: real HTTP over loopback. The listener runs on a
 * uv loop in the case's main thread; a client thread talks to it with plain
 * blocking sockets and, when done, asks the loop (uv_async) to close the
 * listener. Every case ends by checking that done ran once and that
 * uv_loop_close returns 0, i.e. no handle was left open. */
#include "as_http.h"
#include "as_test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

enum { BIG = 1 << 20, HUGE = 32 << 20 };

typedef struct fixture {
  uv_loop_t loop;
  uv_async_t async;
  as_http_t *h;
  int port;
  int done_calls;
  int other_handles; /* seen by uv_walk when done ran */
  bool close_sent;
  void (*client)(struct fixture *fx);
} fixture_t;

static const char OK_200[] =
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\n"
    "Content-Length: 3\r\nConnection: close\r\n\r\nok\n";
static const char BAD_400[] =
    "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; "
    "charset=utf-8\r\nContent-Length: 12\r\nConnection: close\r\n\r\n"
    "Bad Request\n";

/* --- server side ----------------------------------------------------------- */

static void count_other(uv_handle_t *hd, void *arg) {
  fixture_t *fx = arg;

  if (hd != (uv_handle_t *)&fx->async) fx->other_handles++;
}

/* done must come after the last of the listener's handles has closed. */
static void on_done(void *arg) {
  fixture_t *fx = arg;

  fx->done_calls++;
  uv_walk(&fx->loop, count_other, fx);
  AS_CHECK_INT_EQ(fx->other_handles, 0);
}

static void on_done_count(void *arg) {
  (*(int *)arg)++;
}

static void set_body(as_http_response_t *r, int status, const char *text) {
  r->status = status;
  r->body = strdup(text);
  r->body_len = strlen(text);
}

static void route(void *arg, const char *method, const char *path, as_http_response_t *r) {
  fixture_t *fx = arg;
  char text[256];

  if (strcmp(path, "/healthz") == 0) {
    set_body(r, 200, "ok\n");
  } else if (strncmp(path, "/echo", 5) == 0) {
    snprintf(text, sizeof text, "%s %s", method, path);
    set_body(r, 200, text);
  } else if (strcmp(path, "/big") == 0 || strcmp(path, "/huge") == 0) {
    r->status = 200;
    r->content_type = "application/octet-stream";
    r->body_len = strcmp(path, "/big") == 0 ? BIG : HUGE;
    r->body = malloc(r->body_len);
    for (size_t i = 0; r->body != NULL && i < r->body_len; i++) r->body[i] = (char)('a' + i % 26);
  } else if (strcmp(path, "/quit") == 0) {
    as_http_close(fx->h, on_done, fx); /* closing from inside a route */
    fx->h = NULL;
    set_body(r, 200, "bye\n");
  } else if (strcmp(path, "/dropped") == 0) {
    snprintf(text, sizeof text, "%llu", (unsigned long long)as_http_dropped(fx->h));
    set_body(r, 200, text);
  } else if (strcmp(path, "/nomem") == 0) {
    r->status = 500;
  } else {
    set_body(r, 404, "not found\n");
  }
}

static void on_async(uv_async_t *a) {
  fixture_t *fx = a->data;

  as_http_close(fx->h, on_done, fx);
  fx->h = NULL;
  uv_close((uv_handle_t *)a, NULL);
}

/* Client thread: may close the listener itself (close_now) to test closing
 * with connections open; otherwise it is closed when the client returns. */
static void close_now(fixture_t *fx) {
  fx->close_sent = true;
  AS_CHECK_INT_EQ(uv_async_send(&fx->async), 0);
}

static void *client_main(void *arg) {
  fixture_t *fx = arg;

  fx->client(fx);
  if (!fx->close_sent) close_now(fx);
  return NULL;
}

/* Runs client against a fresh listener and checks a clean shutdown. */
static void run_case(void (*client)(fixture_t *), unsigned timeout_ms) {
  fixture_t fx = {.client = client};
  pthread_t t;
  char err[256] = "";

  AS_CHECK_INT_EQ(uv_loop_init(&fx.loop), 0);
  fx.h = as_http_start(&fx.loop, "127.0.0.1", 0, route, &fx, err, sizeof err);
  AS_CHECK_STR_EQ(err, "");
  AS_CHECK(fx.h != NULL);
  if (timeout_ms > 0) as_http_set_timeout_ms(fx.h, timeout_ms);
  fx.port = as_http_port(fx.h);
  AS_CHECK(fx.port > 0);
  AS_CHECK_INT_EQ(uv_async_init(&fx.loop, &fx.async, on_async), 0);
  fx.async.data = &fx;
  AS_CHECK_INT_EQ(pthread_create(&t, NULL, client_main, &fx), 0);
  AS_CHECK_INT_EQ(uv_run(&fx.loop, UV_RUN_DEFAULT), 0);
  AS_CHECK_INT_EQ(pthread_join(t, NULL), 0);
  AS_CHECK_INT_EQ(fx.done_calls, 1);
  AS_CHECK_INT_EQ(uv_loop_close(&fx.loop), 0);
}

/* --- client side ----------------------------------------------------------- */

static int client_connect(int port) {
  struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  struct timeval tv = {.tv_sec = 5};
  int fd = socket(AF_INET, SOCK_STREAM, 0);

  AS_CHECK(fd >= 0);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  AS_CHECK_INT_EQ(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
  AS_CHECK_INT_EQ(connect(fd, (struct sockaddr *)&sin, sizeof sin), 0);
  return fd;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

    AS_CHECK(w > 0);
    p += w;
    n -= (size_t)w;
  }
}

/* Reads until EOF (or a reset, which ends the data too); returns a
 * malloc'd NUL-terminated copy, its length in *len. */
static char *read_all(int fd, size_t *len) {
  size_t cap = 4096;
  char *buf = malloc(cap + 1);
  ssize_t r;

  AS_CHECK(buf != NULL);
  *len = 0;
  while ((r = recv(fd, buf + *len, cap - *len, 0)) > 0) {
    *len += (size_t)r;
    if (*len == cap) {
      buf = realloc(buf, 2 * cap + 1);
      AS_CHECK(buf != NULL);
      cap *= 2;
    }
  }
  AS_CHECK(r == 0 || errno == ECONNRESET); /* not EAGAIN: no 5 s stall */
  buf[*len] = '\0';
  return buf;
}

static char *roundtrip(int port, const char *req, size_t reqlen, size_t *len) {
  int fd = client_connect(port);
  char *resp;

  send_all(fd, req, reqlen);
  resp = read_all(fd, len);
  close(fd);
  return resp;
}

static void check_roundtrip(int port, const char *req, size_t reqlen, const char *want) {
  size_t len;
  char *got = roundtrip(port, req, reqlen, &len);

  AS_CHECK_MEM_EQ(got, len, want, strlen(want));
  free(got);
}

static double now_s(void) {
  struct timespec ts;

  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* --- cases ------------------------------------------------------------------- */

static void client_get_200(fixture_t *fx) {
  const char req[] = "GET /healthz HTTP/1.1\r\nHost: x\r\nUser-Agent: t\r\n\r\n";

  check_roundtrip(fx->port, req, sizeof req - 1, OK_200);
}

AS_TEST(get_200) {
  run_case(client_get_200, 0);
}

/* Request -> exact response, for the request line's many ways to go wrong. */
static void client_table(fixture_t *fx) {
  static const struct {
    const char *req;
    size_t len; /* 0: strlen */
    const char *resp;
  } rows[] = {
      {"GET /echo/a?x=1#f HTTP/1.1\r\nHost: a\r\n\r\n", 0,
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 11\r\n"
       "Connection: close\r\n\r\nGET /echo/a"},
      {"HEAD /healthz HTTP/1.1\r\n\r\n", 0,
       "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n"
       "Connection: close\r\n\r\n"},
      {"GET /healthz HTTP/1.0\n\n", 0, OK_200},
      {"GET /nope HTTP/1.1\r\n\r\n", 0,
       "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "
       "10\r\nConnection: close\r\n\r\nnot found\n"},
      {"GET /nomem HTTP/1.1\r\n\r\n", 0,
       "HTTP/1.1 500 Internal Server Error\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 0\r\nConnection: close\r\n\r\n"},
      {"POST /healthz HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 0,
       "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: text/plain; charset=utf-8\r\n"
       "Content-Length: 19\r\nAllow: GET, HEAD\r\nConnection: close\r\n\r\n"
       "Method Not Allowed\n"},
      {"get /healthz HTTP/1.1\r\n\r\n", 0, NULL}, /* NULL: 405 as above */
      {"DELETE /healthz HTTP/1.0\r\n\r\n", 0, NULL},
      {"HELLO\r\n\r\n", 0, BAD_400},
      {"GET /healthz\r\n\r\n", 0, BAD_400},
      {"GET  /healthz HTTP/1.1\r\n\r\n", 0, BAD_400},
      {"GET /healthz HTTP/2.0\r\n\r\n", 0, BAD_400},
      {"GET /healthz HTTP/1.1 \r\n\r\n", 0, BAD_400},
      {"GET /healthz HTTP/1.10\r\n\r\n", 0, BAD_400},
      {"GET http://x/healthz HTTP/1.1\r\n\r\n", 0, BAD_400},
      {"GET /a\x01z HTTP/1.1\r\n\r\n", 0, BAD_400},
      {"GET /a\xffz HTTP/1.1\r\n\r\n", 0, BAD_400},
      {"G(T /healthz HTTP/1.1\r\n\r\n", 0, BAD_400},
      {"GET /healthz HTTP/1.1\0junk\r\n\r\n", 30, BAD_400},
      {"\r\n\r\n", 0, BAD_400},
      {"\n\n", 0, BAD_400},
  };
  const char *last = NULL;

  /* Compared as "row N: <response>" so that a failure names its row. */
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    const char *want = rows[i].resp != NULL ? rows[i].resp : last;
    size_t len = rows[i].len > 0 ? rows[i].len : strlen(rows[i].req), got_len;
    char *got = roundtrip(fx->port, rows[i].req, len, &got_len), *a = NULL, *b = NULL;

    AS_CHECK(asprintf(&a, "row %zu: %s", i, got) > 0 && asprintf(&b, "row %zu: %s", i, want) > 0);
    AS_CHECK_STR_EQ(a, b);
    AS_CHECK_INT_EQ(got_len, strlen(want));
    free(a);
    free(b);
    free(got);
    last = want;
  }
}

AS_TEST(request_table) {
  run_case(client_table, 0);
}

static void client_byte_by_byte(fixture_t *fx) {
  const char req[] = "GET /healthz HTTP/1.1\r\nHost: slowly\r\n\r\n";
  int fd = client_connect(fx->port);
  size_t len;
  char *resp;

  for (size_t i = 0; i < sizeof req - 1; i++) {
    send_all(fd, req + i, 1);
    usleep(1000);
  }
  resp = read_all(fd, &len);
  AS_CHECK_STR_EQ(resp, OK_200);
  free(resp);
  close(fd);
}

AS_TEST(byte_by_byte) {
  run_case(client_byte_by_byte, 0);
}

/* A head of exactly 8 KiB is served; one byte more is refused with 400,
 * and so is a head that never ends. */
static void client_head_limit(fixture_t *fx) {
  static const char start[] = "GET /healthz HTTP/1.1\r\nX: ";
  static char req[9100];
  size_t fixed = sizeof start - 1 + 4;

  memcpy(req, start, sizeof start - 1);
  memset(req + sizeof start - 1, 'a', 8192 - fixed);
  memcpy(req + 8192 - 4, "\r\n\r\n", 4);
  check_roundtrip(fx->port, req, 8192, OK_200);
  memset(req + sizeof start - 1, 'a', 8193 - fixed);
  memcpy(req + 8193 - 4, "\r\n\r\n", 4);
  check_roundtrip(fx->port, req, 8193, BAD_400);
  memset(req + sizeof start - 1, 'a', sizeof req - sizeof start + 1);
  check_roundtrip(fx->port, req, sizeof req, BAD_400);
}

AS_TEST(oversized_head_400) {
  run_case(client_head_limit, 0);
}

static void client_slow(fixture_t *fx) {
  int fd = client_connect(fx->port);
  double t0 = now_s(), dt;
  size_t len;
  char *resp;

  send_all(fd, "GET /heal", 9);
  resp = read_all(fd, &len);
  dt = now_s() - t0;
  AS_CHECK_STR_EQ(resp,
                  "HTTP/1.1 408 Request Timeout\r\nContent-Type: text/plain; "
                  "charset=utf-8\r\nContent-Length: 16\r\nConnection: close\r\n\r\n"
                  "Request Timeout\n");
  AS_CHECK(dt > 0.15 && dt < 3);
  free(resp);
  close(fd);
  /* Connected and silent: the same. */
  fd = client_connect(fx->port);
  resp = read_all(fd, &len);
  AS_CHECK(strncmp(resp, "HTTP/1.1 408 ", 13) == 0);
  free(resp);
  close(fd);
}

AS_TEST(slow_client_408) {
  run_case(client_slow, 200);
}

/* Clients that vanish at every stage; the listener keeps serving. */
static void client_early_disconnect(fixture_t *fx) {
  static const char *const partial[] = {"", "GET /hea", "GET /healthz HTTP/1.1\r\n\r\n",
                                        "GET /big HTTP/1.1\r\n\r\n"};

  for (size_t i = 0; i < sizeof partial / sizeof partial[0]; i++) {
    int fd = client_connect(fx->port);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};

    send_all(fd, partial[i], strlen(partial[i]));
    if (i % 2) /* half of them with a reset instead of a FIN */
      AS_CHECK_INT_EQ(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
  }
  usleep(50 * 1000);
  client_get_200(fx);
}

AS_TEST(early_disconnect) {
  run_case(client_early_disconnect, 0);
}

/* The peer stops reading a 32 MiB answer, more than socket buffers hold:
 * the timer cuts the write off. */
static void client_stalled_reader(fixture_t *fx) {
  const char req[] = "GET /huge HTTP/1.1\r\n\r\n";
  int fd = client_connect(fx->port);
  size_t len;
  char *resp;

  send_all(fd, req, sizeof req - 1);
  usleep(500 * 1000);
  resp = read_all(fd, &len);
  AS_CHECK(len > 0 && len < HUGE);
  AS_CHECK(strncmp(resp, "HTTP/1.1 200 OK\r\n", 17) == 0);
  free(resp);
  close(fd);
}

AS_TEST(stalled_reader_cut_off) {
  run_case(client_stalled_reader, 200);
}

static void client_big(fixture_t *fx) {
  const char req[] = "GET /big HTTP/1.1\r\n\r\n";
  const char head[] =
      "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
      "Content-Length: 1048576\r\nConnection: close\r\n\r\n";
  size_t len;
  char *resp = roundtrip(fx->port, req, sizeof req - 1, &len);

  AS_CHECK_INT_EQ(len, sizeof head - 1 + BIG);
  AS_CHECK_MEM_EQ(resp, sizeof head - 1, head, sizeof head - 1);
  for (size_t i = 0; i < BIG; i++) AS_CHECK(resp[sizeof head - 1 + i] == (char)('a' + i % 26));
  free(resp);
}

AS_TEST(big_body) {
  run_case(client_big, 0);
}

/* Ten connections in flight at once. */
static void client_concurrent(fixture_t *fx) {
  const char req[] = "GET /healthz HTTP/1.1\r\n\r\n";
  int fds[10];

  for (size_t i = 0; i < 10; i++) fds[i] = client_connect(fx->port);
  for (size_t i = 0; i < 10; i++) send_all(fds[10 - 1 - i], req, sizeof req - 1);
  for (size_t i = 0; i < 10; i++) {
    size_t len;
    char *resp = read_all(fds[i], &len);

    AS_CHECK_STR_EQ(resp, OK_200);
    free(resp);
    close(fds[i]);
  }
}

AS_TEST(concurrent_connections) {
  run_case(client_concurrent, 0);
}

/* Idle connections beyond the cap (64) cost the oldest idle one its slot,
 * counted, and a probe still gets its answer at once. Without the cap, 1,100
 * idle connections under a 1,024-descriptor limit left none for /healthz. */
static void client_idle_flood(fixture_t *fx) {
  enum { IDLE = 200 };
  const char req[] = "GET /dropped HTTP/1.1\r\n\r\n";
  int fds[IDLE];
  size_t len, evicted = 0;
  char *resp;

  for (size_t i = 0; i < IDLE; i++) fds[i] = client_connect(fx->port);
  usleep(200 * 1000); /* the loop has accepted them all */
  client_get_200(fx);
  resp = roundtrip(fx->port, req, sizeof req - 1, &len);
  AS_CHECK_STR_EQ(strstr(resp, "\r\n\r\n"), "\r\n\r\n137"); /* 136 + 1 for the probe */
  free(resp);
  for (size_t i = 0; i < IDLE; i++) {
    char b;
    struct timeval tv = {.tv_sec = 0, .tv_usec = 1000};

    setsockopt(fds[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (recv(fds[i], &b, 1, 0) == 0) evicted++; /* EOF: closed by the cap */
    close(fds[i]);
  }
  AS_CHECK_INT_EQ(evicted, 137);
}

AS_TEST(idle_connections_capped) {
  run_case(client_idle_flood, 0);
}

/* Closing with live connections closes them and still reports done once
 * every handle is closed. */
static void client_close_with_open_conns(fixture_t *fx) {
  int fds[3];

  client_get_200(fx); /* the loop is up */
  for (size_t i = 0; i < 3; i++) {
    fds[i] = client_connect(fx->port);
    send_all(fds[i], "GET /heal", i * 3);
  }
  usleep(100 * 1000); /* the loop has accepted them */
  close_now(fx);
  for (size_t i = 0; i < 3; i++) {
    size_t len;
    char *resp = read_all(fds[i], &len);

    AS_CHECK_INT_EQ(len, 0);
    free(resp);
    close(fds[i]);
  }
}

AS_TEST(close_with_live_connections) {
  run_case(client_close_with_open_conns, 0);
}

/* A route that closes the listener: its connection closes unanswered. */
static void client_quit(fixture_t *fx) {
  const char req[] = "GET /quit HTTP/1.1\r\n\r\n";
  size_t len;
  char *resp = roundtrip(fx->port, req, sizeof req - 1, &len);

  AS_CHECK_INT_EQ(len, 0);
  free(resp);
}

AS_TEST(route_closes_listener) {
  run_case(client_quit, 0);
}

/* --- start failures ----------------------------------------------------------- */

AS_TEST(start_bad_address) {
  static const struct {
    const char *addr;
    int port;
  } rows[] = {{"not-an-ip", 0}, {"127.0.0.1", -1}, {"127.0.0.1", 65536}, {"1.2.3", 80}};
  uv_loop_t loop;

  AS_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
    char err[256] = "";

    AS_CHECK(as_http_start(&loop, rows[i].addr, rows[i].port, route, NULL, err, sizeof err) ==
             NULL);
    AS_CHECK(strstr(err, "bad listen address") != NULL);
  }
  AS_CHECK(as_http_start(&loop, NULL, 0, route, NULL, NULL, 0) == NULL);
  AS_CHECK(as_http_start(&loop, "127.0.0.1", 0, NULL, NULL, NULL, 0) == NULL);
  AS_CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

AS_TEST(start_port_in_use) {
  uv_loop_t loop;
  as_http_t *h1;
  char err[256] = "";
  int done = 0;

  AS_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  h1 = as_http_start(&loop, "127.0.0.1", 0, route, NULL, err, sizeof err);
  AS_CHECK(h1 != NULL);
  AS_CHECK(as_http_start(&loop, "127.0.0.1", as_http_port(h1), route, NULL, err, sizeof err) ==
           NULL);
  AS_CHECK(strstr(err, "address already in use") != NULL);
  AS_CHECK(as_http_start(&loop, "192.0.2.1", 0, route, NULL, err, sizeof err) == NULL);
  AS_CHECK(strstr(err, "as_http: listen on 192.0.2.1 port 0: ") != NULL);
  as_http_close(h1, on_done_count, &done);
  AS_CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  AS_CHECK_INT_EQ(done, 1);
  AS_CHECK_INT_EQ(uv_loop_close(&loop), 0);
}

AS_TEST(close_null_and_ipv6) {
  uv_loop_t loop;
  as_http_t *h;
  char err[256] = "";
  int done = 0;

  as_http_close(NULL, on_done_count, &done);
  AS_CHECK_INT_EQ(done, 0);
  AS_CHECK_INT_EQ(uv_loop_init(&loop), 0);
  h = as_http_start(&loop, "::1", 0, route, NULL, err, sizeof err);
  if (h != NULL) { /* no IPv6 in some containers; then only the error path */
    AS_CHECK(as_http_port(h) > 0);
    as_http_close(h, on_done_count, &done);
    as_http_close(h, on_done_count, &done); /* a second close is ignored */
  }
  AS_CHECK_INT_EQ(uv_run(&loop, UV_RUN_DEFAULT), 0);
  AS_CHECK_INT_EQ(done, h != NULL ? 1 : 0);
  AS_CHECK_INT_EQ(uv_loop_close(&loop), 0);
}
