"""The soak's participants: one threaded HTTP server, any path is a step endpoint.

Each call is answered at random — 2xx, 5xx, a certain 4xx (400/404/409/422 or
408/425/429), slow past the call timeout, or a body dripped a byte at a time — drawn from
`Random(seed:key:n)` (n = how many calls with that Idempotency-Key came before), so a
call's answer depends on the seed and its place in its key's history, not on thread timing.

Every call is recorded (`CallRecord`): saga, step, phase, key, the answer, when it was read
and when it ended (answered, or the caller's connection closed). Two facts are observed
on the socket itself, so that the checks never rest on guessed timings:

- `stale`: the caller had already closed its connection when the request was read (it gave
  up first; the request sat unread in the socket buffer);
- `overlapped`: when this request was read, another request with the same key was still
  open — its connection not closed by the caller and not yet answered. On loopback a
  close() reaches the peer's socket before close() returns, so an open socket here means
  the orchestrator really held two calls with one key at once.
"""

import json
import random
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

# Answer kinds; the weights are per phase (compensations fail less, and never drip).
ACTION_WEIGHTS = {
    "ok": 63,
    "5xx": 9,
    "4xx": 8,
    "retryable_4xx": 5,
    "slow": 9,
    "drip": 2,
    "later": 4,
}
COMPENSATION_WEIGHTS = {"ok": 86, "5xx": 6, "4xx": 2, "slow": 6}
CERTAIN_4XX = (400, 404, 409, 422)
# "later": after a moment (a call in flight a cancel can land on), 503 or 429 with
# Retry-After: a saga that waits it out after an accepted cancel breaks §9.1.
LATER_STATUSES = (503, 429)
RETRYABLE_4XX = (408, 425, 429)
POLL = 0.01  # how often a slow answer looks whether its caller hung up


@dataclass
class CallRecord:
    seq: int
    saga_id: str
    step: str
    phase: str
    key: str
    kind: str  # the planned answer: ok, 5xx, 4xx, retryable_4xx, slow, drip, later
    started: float  # time.time() when the request had been read (before the stale check)
    stale: bool = False
    overlapped: list[int] = field(default_factory=list)
    status: int | None = None  # the status line written, if any
    ended: float | None = None
    end: str = "open"  # answered | peer_closed | write_failed | stale

    @property
    def answered_2xx(self) -> bool:
        return self.end == "answered" and self.status is not None and self.status < 300

    @property
    def certain_rejection(self) -> bool:
        """Answered with a 4xx the caller read as 'not done' — as far as this side knows."""
        return self.end == "answered" and self.status is not None and 400 <= self.status < 500


def peer_closed(sock: socket.socket) -> bool:
    """The caller closed (or reset) the connection: EOF is waiting in the socket."""
    try:
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


class Recorder:
    """Every call, and the calls in flight per key (to see two open at once)."""

    def __init__(self, seed: int, timeout: float, retry_after: float, weights=None):
        self.seed = seed
        self.weights = weights or _weights
        self.timeout = timeout
        self.retry_after = retry_after
        self.lock = threading.Lock()
        self.calls: list[CallRecord] = []
        self.open: dict[str, dict[int, socket.socket]] = {}
        self.per_key: dict[str, int] = {}

    def register(self, headers, sock: socket.socket) -> tuple[CallRecord, random.Random]:
        key = headers.get("Idempotency-Key", "")
        parts = key.split(":")
        started = time.time()
        stale = peer_closed(sock)
        with self.lock:
            n = self.per_key.get(key, 0)
            self.per_key[key] = n + 1
            rng = random.Random(f"{self.seed}:{key}:{n}")
            phase = parts[2] if len(parts) > 2 else "unknown"
            weights = self.weights(phase)
            kind = rng.choices(list(weights), list(weights.values()))[0]
            record = CallRecord(
                seq=len(self.calls),
                saga_id=headers.get("X-Saga-Id", ""),
                step=headers.get("X-Saga-Step", ""),
                phase=phase,
                key=key,
                kind=kind,
                started=started,
                stale=stale,
            )
            others = self.open.setdefault(key, {})
            record.overlapped = [seq for seq, other in others.items() if not peer_closed(other)]
            self.calls.append(record)
            if not stale:
                others[record.seq] = sock
        return record, rng

    def close(self, record: CallRecord, end: str, status: int | None = None) -> None:
        """The call is over for the caller; called *before* an answer is written, so a
        retry the answer provokes never finds this call still registered as open."""
        with self.lock:
            self.open.get(record.key, {}).pop(record.seq, None)
            if record.ended is None:
                record.ended = time.time()
                record.end = end
                record.status = status

    def snapshot(self) -> list[CallRecord]:
        with self.lock:
            return list(self.calls)

    def open_count(self) -> int:
        with self.lock:
            return sum(len(calls) for calls in self.open.values())


def _weights(phase: str) -> dict[str, int]:
    return COMPENSATION_WEIGHTS if phase == "compensation" else ACTION_WEIGHTS


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as the engine's client uses it
    recorder: Recorder  # set on the subclass the server makes

    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        return  # thousands of calls: the records are the log

    def do_POST(self):  # noqa: N802 - http.server's naming
        self._serve()

    do_PUT = do_PATCH = do_DELETE = do_GET = do_POST  # noqa: N815

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        record, rng = self.recorder.register(self.headers, self.connection)
        if record.stale:
            self.recorder.close(record, "stale")
            self.close_connection = True
            return
        if record.kind in ("slow", "drip"):
            self._slow(record, rng)
        elif record.kind == "later":
            self._later(record, rng)
        else:
            self._answer(record, _status(record.kind, rng))

    def _later(self, record: CallRecord, rng: random.Random) -> None:
        if _sleep_watching(self.connection, rng.uniform(0.3, 0.8) * self.recorder.timeout):
            self.recorder.close(record, "peer_closed")
            self.close_connection = True
            return
        retry_after = f"{self.recorder.retry_after:g}"
        self._answer(record, rng.choice(LATER_STATUSES), {"Retry-After": retry_after})

    def _answer(self, record: CallRecord, status: int, headers: dict | None = None) -> None:
        body = {"id": f"{record.step}-{record.seq}", "ok": True} if status < 300 else {}
        if status >= 300:
            body = {"error": f"soak answer {status}"}
        payload = json.dumps(body).encode()
        if peer_closed(self.connection):
            self.recorder.close(record, "peer_closed")
            self.close_connection = True
            return
        self.recorder.close(record, "answered", status)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(payload)
            self.wfile.flush()
        except OSError:
            record.end = "write_failed"
            self.close_connection = True

    def _slow(self, record: CallRecord, rng: random.Random) -> None:
        """Hold the call past the caller's timeout; it ends when the caller hangs up."""
        timeout = self.recorder.timeout
        if record.kind == "drip":
            self._drip(record, timeout)
            return
        until = time.monotonic() + rng.uniform(1.6 * timeout, 2.6 * timeout)
        while time.monotonic() < until:
            if peer_closed(self.connection):
                self.recorder.close(record, "peer_closed")
                self.close_connection = True
                return
            time.sleep(POLL)
        self._answer(record, 200)

    def _drip(self, record: CallRecord, timeout: float) -> None:
        """Headers at once, then the body a byte every timeout/2: a timeout that bounds
        each socket read, not the call, keeps this call open for 40 half-timeouts."""
        length = 40
        try:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(length))
            self.end_headers()
            self.wfile.flush()
            for sent in range(1, length + 1):
                if _sleep_watching(self.connection, timeout / 2):
                    self.recorder.close(record, "peer_closed")
                    self.close_connection = True
                    return
                if sent == length:
                    # Closed before the last byte leaves, as _answer does (see close()).
                    self.recorder.close(record, "answered", 200)
                self.wfile.write(b" ")
                self.wfile.flush()
        except OSError:
            self.recorder.close(record, "write_failed")
            record.end = "write_failed"
            self.close_connection = True


def _sleep_watching(sock: socket.socket, seconds: float) -> bool:
    """Sleep; True as soon as the caller hangs up."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        if peer_closed(sock):
            return True
        time.sleep(POLL)
    return False


def _status(kind: str, rng: random.Random) -> int:
    if kind == "ok":
        return rng.choice((200, 200, 201))
    if kind == "5xx":
        return rng.choice((500, 502, 503))
    if kind == "4xx":
        return rng.choice(CERTAIN_4XX)
    return rng.choice(RETRYABLE_4XX)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # bursts of connections after a worker restart

    def handle_error(self, request, client_address):
        # A killed worker resets its idle keep-alive connections: expected, not news.
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)


class ParticipantServer:
    """The server in a daemon thread of the soak process; `recorder` holds the calls."""

    def __init__(self, seed: int, timeout: float, retry_after: float, weights=None):
        """`weights`: phase -> {answer kind: weight}; the soak's mix by default."""
        self.recorder = Recorder(seed, timeout, retry_after, weights)
        handler = type("SoakHandler", (Handler,), {"recorder": self.recorder})
        self.server = _Server(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
