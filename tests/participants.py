"""A real, scripted participant HTTP server for tests (no mocks of the HTTP client).

    server = ParticipantServer()          # threaded, on a free port of 127.0.0.1 (or `port`)
    server.script("POST", "/pay", Reply(503, {"error": "busy"}, headers={"Retry-After": "1"}),
                  Reply(201, {"payment_id": "p-1"}))
    url = server.url("/pay")
    ...
    server.received("POST", "/pay")       # every request: method, path, headers, body, time

Replies of a script are used in order; the last one repeats. A path ending in `*` matches
by prefix. Unscripted requests get 200 `{}`. A reply may be a callable taking the request,
e.g. `Held(reply)`, which answers only once the test calls `release()`: the test acts while
the call is certainly in flight, however slow the box.
"""

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # dict/list → JSON, str → text, bytes as they are, None → empty
    delay: float = 0.0  # seconds before answering (the request is recorded at once)
    headers: dict = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if self.body is None:
            return b"", "application/json"
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain"
        return json.dumps(self.body).encode(), "application/json"


class Held:
    """`reply`, held back until `release()` (or `timeout` seconds, so a failing test ends)."""

    def __init__(self, reply: Reply, timeout: float = 10.0):
        self.reply = reply
        self.timeout = timeout
        self._released = threading.Event()

    def __call__(self, request) -> Reply:
        self._released.wait(self.timeout)
        return self.reply

    def release(self) -> None:
        self._released.set()


@dataclass
class Received:
    method: str
    path: str
    headers: dict  # lower-case names
    body: Any  # parsed JSON, else text, None when empty
    at: float  # time.monotonic() on arrival
    raw: bytes = b""  # the body as received (e.g. to check a signature over it)
    answered: float | None = None  # time.monotonic() once the answer was written

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


class ParticipantServer:
    def __init__(self, port: int = 0):
        self._scripts: dict[tuple[str, str], list] = {}
        self._received: list[Received] = []
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, method: str, path: str, *replies: Reply | Callable) -> None:
        with self._lock:
            self._scripts[(method.upper(), path)] = list(replies)

    def received(self, method: str | None = None, path: str | None = None) -> list[Received]:
        with self._lock:
            return [
                r
                for r in self._received
                if (method is None or r.method == method.upper())
                and (path is None or r.path == path or _prefix_match(path, r.path))
            ]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def _record_and_pick(self, request: Received) -> Reply:
        with self._lock:
            self._received.append(request)
            replies = self._scripts.get((request.method, request.path))
            if replies is None:
                replies = next(
                    (
                        script
                        for (method, path), script in self._scripts.items()
                        if method == request.method and _prefix_match(path, request.path)
                    ),
                    None,
                )
            if not replies:
                return Reply(200, {})
            reply = replies.pop(0) if len(replies) > 1 else replies[0]
        return reply(request) if callable(reply) else reply


def _prefix_match(pattern: str, path: str) -> bool:
    return pattern.endswith("*") and path.startswith(pattern[:-1])


def _handler_for(server: ParticipantServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, like real participants
        disable_nagle_algorithm = True  # no 40 ms delayed-ACK stalls between header and body

        def _handle(self):
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw.decode(errors="replace")
            request = Received(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                at=time.monotonic(),
                raw=raw,
            )
            reply = server._record_and_pick(request)
            if reply.delay:
                time.sleep(reply.delay)
            payload, content_type = reply.encoded()
            try:
                self.send_response(reply.status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(payload)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(payload)
                self.wfile.flush()
                request.answered = time.monotonic()
            except (BrokenPipeError, ConnectionResetError):
                pass  # the caller gave up (timeout)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle

        def log_message(self, format, *args):
            pass

    return Handler
