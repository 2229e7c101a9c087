"""Keep-alive connections for participant calls: a small pool per thread, each connection
opened only to addresses its caller checked, each socket operation bounded by the call's
deadline.

- `PinnedConnection` is http.client's connection with its public `connect()` overridden:
  it connects to the addresses `resolve(host, port, deadline)` returns (the SSRF check's: a DNS
  answer that changes in between cannot send it elsewhere) and wraps TLS itself. The host
  is always given with its port, so an IPv6 literal is never re-split on its colons.
- `DeadlineSocket` hands http.client a socket whose every send and receive waits at most
  until the call's deadline: a participant dripping a byte at a time cannot stretch a call
  past its timeout (a socket timeout alone bounds each read, not the call).
- `ConnectionPool` keeps at most MAX_PER_THREAD connections, none idle longer than
  IDLE_SECONDS: a templated host cannot grow a thread's connections without bound.
"""

import http.client
import io
import math
import select
import socket
import ssl
import threading
import time
from collections import OrderedDict
from collections.abc import Callable

MAX_PER_THREAD = 32
# Participants close idle keep-alive connections after a few seconds to a minute: one
# idle longer than this is more likely dead than useful.
IDLE_SECONDS = 30.0

# (host, port, deadline) -> getaddrinfo-style entries the caller has checked, looked up by
# the deadline at the latest.
Resolver = Callable[[str, int, float], list]


class NotSent(Exception):
    """No connection could be opened (refused, DNS, TLS handshake, connect timeout): not a
    byte of the request left. `reason` is the error that stopped it."""

    def __init__(self, reason: OSError):
        super().__init__(str(reason))
        self.reason = reason


class DeadlineSocket:
    """The part of a socket http.client uses, every send and receive ending by `deadline`
    (a time.monotonic() value): past it, TimeoutError."""

    def __init__(self, sock: socket.socket, deadline: float = math.inf):
        self.sock = sock
        self.deadline = deadline

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's time ran out")
        return left

    def sendall(self, data) -> None:
        self.sock.settimeout(self.remaining())  # sendall's timeout bounds the whole send
        self.sock.sendall(data)

    def recv_into(self, buffer) -> int:
        self.sock.settimeout(self.remaining())
        return self.sock.recv_into(buffer)

    def makefile(self, mode: str = "rb") -> io.BufferedReader:
        return io.BufferedReader(_DeadlineReader(self))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        self.sock.close()


class _DeadlineReader(io.RawIOBase):
    """What http.client's response reads from: each read bounded by the deadline."""

    def __init__(self, sock: DeadlineSocket):
        super().__init__()
        self._sock = sock

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._sock.recv_into(buffer)


class PinnedConnection(http.client.HTTPConnection):
    """An HTTP/1.1 keep-alive connection to the checked addresses of `host`, bounded in
    time by `begin(deadline)`. With `tls`, an HTTPS connection (certificate checked
    against `host`)."""

    def __init__(self, host: str, port: int, resolve: Resolver, tls: ssl.SSLContext | None = None):
        super().__init__(host, port)
        self.resolve = resolve
        self.tls = tls
        self.deadline = math.inf
        self.last_used = time.monotonic()

    def begin(self, deadline: float) -> None:
        """Everything this connection does from now on ends by `deadline`."""
        self.deadline = deadline
        if self.sock is not None:
            self.sock.deadline = deadline

    def connect(self) -> None:
        try:
            sock = self._open()
        except OSError as exc:  # ssl.SSLError and socket.gaierror included
            raise NotSent(exc) from exc
        self.sock = DeadlineSocket(sock, self.deadline)

    def _open(self) -> socket.socket:
        sock = _connect_any(self.resolve(self.host, self.port, self.deadline), self._remaining)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.tls is not None:
                sock.settimeout(self._remaining())  # the whole handshake, not each read
                sock = self.tls.wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        return sock

    def _remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("the call's time ran out")
        return left


class PinnedTLSConnection(PinnedConnection):
    default_port = http.client.HTTPS_PORT  # no `:443` in the Host header


def _connect_any(infos: list, remaining: Callable[[], float]) -> socket.socket:
    """A socket connected to the first address that answers, within the time left."""
    error: OSError = OSError("the host has no address")
    for family, kind, proto, _, sockaddr in infos:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(remaining())
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error


class ConnectionPool:
    """One thread's keep-alive connections by (scheme, host, port), least recently used
    first: at most `size` of them, none idle longer than `idle_seconds`."""

    def __init__(self, size: int = MAX_PER_THREAD, idle_seconds: float = IDLE_SECONDS):
        self.size = size
        self.idle_seconds = idle_seconds
        self.connections: OrderedDict[tuple, PinnedConnection] = OrderedDict()

    def get(self, key: tuple, create: Callable[[], PinnedConnection]) -> PinnedConnection:
        """The connection for `key`, reused when it is still open, else a new one."""
        now = time.monotonic()
        self._evict_idle(now)
        conn = self.connections.pop(key, None)
        if conn is not None and conn.sock is not None and _dropped(conn.sock):
            conn.close()  # the participant closed it while idle: a new one is opened
        if conn is None:
            conn = create()
        conn.last_used = now
        self.connections[key] = conn
        if len(self.connections) > self.size:
            _, oldest = self.connections.popitem(last=False)
            oldest.close()
        return conn

    def _evict_idle(self, now: float) -> None:
        while self.connections:
            key, oldest = next(iter(self.connections.items()))
            if now - oldest.last_used < self.idle_seconds:
                return
            del self.connections[key]
            oldest.close()


def _dropped(sock: DeadlineSocket) -> bool:
    """An idle connection that is readable has been closed by its peer."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
    except (OSError, ValueError):
        return True
    return bool(readable)


_local = threading.local()


def thread_pool() -> ConnectionPool:
    """The calling thread's pool (sized by the module's settings when it was created)."""
    pool = getattr(_local, "pool", None)
    if pool is None:
        pool = _local.pool = ConnectionPool(MAX_PER_THREAD, IDLE_SECONDS)
    return pool
