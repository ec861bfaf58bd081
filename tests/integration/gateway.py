"""Loopback gateways for the notification sender: an HTTP sink (the SMS and
push webhooks) and an SMTP sink (aiosmtpd), both recording what they were
sent, headers included.

The HTTP sink answers each request by a per-path plan: a list of answers
used in turn (the last one repeats): an int status (200, 500, ...),
("429", seconds) for a 429 with Retry-After, "hang" (never answers until
the sink closes: the client's timeout must end it) or "hold" (records the
request, then waits until release() before answering 200: a test kills
the sender meanwhile). Keep-alive: HTTP/1.1 with Content-Length.

Used in-process by tests/integration/test_notification_send*.py and the
bench, and as a process by `make run` (scripts/run.sh):
    python3 tests/integration/gateway.py --record FILE
prints "gateway http=<port> smtp=<port>" and appends one JSON line per
message received to FILE (what scripts/demo.py shows)."""

import argparse
import email
import email.policy
import json
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class HttpSink:
    def __init__(self, host="127.0.0.1", port=0, on_request=None):
        self.requests = []
        self.plans = {}
        self.default = 200
        self.lock = threading.Lock()
        self.closed = threading.Event()
        self.released = threading.Event()
        self.arrived = threading.Condition(self.lock)
        self.on_request = on_request
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(n)
                answer = sink._record(self.path, dict(self.headers.items()), body)
                if answer == "hang":
                    sink.closed.wait(600)
                    self.close_connection = True
                    return
                if answer == "hold":
                    sink.released.wait(600)
                    answer = 200
                retry_after = None
                if isinstance(answer, tuple):
                    answer, retry_after = int(answer[0]), answer[1]
                payload = b'{"ok":true}' if answer < 300 else b'{"error":"gateway says no"}'
                self.send_response(answer)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                if retry_after is not None:
                    self.send_header("Retry-After", str(retry_after))
                self.end_headers()
                self.wfile.write(payload)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def _record(self, path, headers, body):
        with self.lock:
            plan = self.plans.get(path)
            answer = (plan.pop(0) if len(plan) > 1 else plan[0]) if plan else self.default
            self.requests.append({"path": path, "headers": headers, "body": body,
                                  "at": time.monotonic(), "answer": answer})
            self.arrived.notify_all()
        if self.on_request:
            self.on_request(path, headers, body)
        return answer

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def plan(self, path, answers):
        with self.lock:
            self.plans[path] = list(answers)

    def release(self):
        self.released.set()

    def got(self, path=None):
        with self.lock:
            return [r for r in self.requests if path is None or r["path"] == path]

    def wait_for(self, n, path=None, timeout=30):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len([r for r in self.requests if path is None or r["path"] == path]) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"http sink: fewer than {n} requests on {path}: "
                                         f"{[(r['path'], r['answer']) for r in self.requests]}")
                self.arrived.wait(left)
        return self.got(path)

    def close(self):
        self.closed.set()
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


class FastHttpSink:
    """For the bench: answers every POST 200 at once (asyncio, keep-alive,
    no thread per connection) and keeps (arrival time, path, body) of each;
    thousands of requests a second on one core."""

    def __init__(self, host="127.0.0.1", port=0):
        import asyncio
        self.received = []
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        sink = self

        async def serve(reader, writer):
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    n = 0
                    for line in head.split(b"\r\n"):
                        if line[:15].lower() == b"content-length:":
                            n = int(line[15:])
                    body = await reader.readexactly(n) if n else b""
                    sink.received.append((time.time(), head.split(b" ", 2)[1].decode(), body))
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}")
            except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                    asyncio.CancelledError):
                writer.close()

        def run():
            asyncio.set_event_loop(self.loop)
            self.server = self.loop.run_until_complete(asyncio.start_server(serve, host, port))
            self.port = self.server.sockets[0].getsockname()[1]
            ready.set()
            self.loop.run_forever()

        self.thread = threading.Thread(target=run, daemon=True)
        self.thread.start()
        ready.wait(10)

    def url(self, path):
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        import asyncio

        async def stop():
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.loop.stop()
        asyncio.run_coroutine_threadsafe(stop(), self.loop)
        self.thread.join(5)


class SmtpSink:
    """aiosmtpd on a thread; messages: [{"from", "to", "message"
    (email.message.EmailMessage), "raw"}]."""

    def __init__(self, host="127.0.0.1", port=0, on_message=None):
        from aiosmtpd.controller import Controller
        self.messages = []
        self.lock = threading.Condition()
        self.on_message = on_message
        sink = self

        class Handler:
            async def handle_DATA(self, server, session, envelope):
                raw = envelope.original_content or envelope.content
                msg = email.message_from_bytes(raw, policy=email.policy.default)
                with sink.lock:
                    sink.messages.append({"from": envelope.mail_from,
                                          "to": list(envelope.rcpt_tos),
                                          "message": msg, "raw": raw})
                    sink.lock.notify_all()
                if sink.on_message:
                    sink.on_message(envelope.mail_from, list(envelope.rcpt_tos), msg)
                return "250 OK"

        if port == 0:
            import socket
            s = socket.socket()
            s.bind((host, 0))
            port = s.getsockname()[1]
            s.close()
        self.controller = Controller(Handler(), hostname=host, port=port)
        self.controller.start()
        self.port = port

    def url(self):
        return f"smtp://127.0.0.1:{self.port}"

    def wait_for(self, n, timeout=30):
        deadline = time.monotonic() + timeout
        with self.lock:
            while len(self.messages) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"smtp sink: {len(self.messages)} messages, wanted {n}")
                self.lock.wait(left)
            return list(self.messages)

    def close(self):
        self.controller.stop()


def html_of(msg):
    """The text/html part of an e-mail, decoded."""
    part = msg.get_body(preferencelist=("html",))
    return part.get_content() if part is not None else None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--record", required=True, help="append one JSON line per message here")
    ap.add_argument("--http-port", type=int, default=0)
    ap.add_argument("--smtp-port", type=int, default=0)
    a = ap.parse_args()
    out = open(a.record, "a", buffering=1)
    lock = threading.Lock()

    def write(rec):
        with lock:
            out.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def on_request(path, headers, body):
        try:
            doc = json.loads(body)
        except ValueError:
            doc = {"unparsed": body.decode(errors="replace")}
        write({"gateway": path.strip("/"), "idempotency_key": headers.get("Idempotency-Key"),
               "message": doc})

    def on_message(sender, rcpts, msg):
        write({"gateway": "email", "to": rcpts, "subject": str(msg["Subject"]),
               "message_id": str(msg["Message-ID"]), "html": html_of(msg)})

    http = HttpSink(port=a.http_port, on_request=on_request)
    smtp = SmtpSink(port=a.smtp_port, on_message=on_message)
    print(f"gateway http={http.port} smtp={smtp.port}", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        http.close()
        smtp.close()


if __name__ == "__main__":
    sys.exit(main())
