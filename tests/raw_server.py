"""A loopback TCP server for participants that misbehave below HTTP: close mid-call, never
answer, drip bytes, reset a keep-alive connection. Each accepted connection runs
`handle(server, sock)` in its own thread; the server records connections and requests.

    server = RawServer(answer_ok)            # 127.0.0.1; RawServer(h, host="::1") for IPv6
    participant_call(request_to(server.url("/x")), ...)
    server.requests                          # request heads read, in order
"""

import socket
import threading
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n"
OK_BODY = b'{"ok":true}'


class RawServer:
    def __init__(self, handle, host: str = "127.0.0.1"):
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.host = host
        self.handle = handle
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((host, 0))
        self.listener.listen(16)
        self.port = self.listener.getsockname()[1]
        self.accepted = 0
        self.closed_by_client = 0  # connections the client closed (EOF seen while idle)
        self.requests: list[bytes] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept_loop, daemon=True).start()

    def url(self, path: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}{path}"

    def close(self) -> None:
        """Stop listening: new connections are refused (open ones stay as they are)."""
        try:
            self.listener.shutdown(socket.SHUT_RDWR)  # wakes the blocked accept()
        except OSError:
            pass
        self.listener.close()

    def read_request(self, sock: socket.socket) -> bytes | None:
        """One request's head (and its Content-Length body, dropped); None at EOF."""
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                if not data:
                    with self._lock:
                        self.closed_by_client += 1
                return None
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        length = _content_length(head)
        while len(rest) < length:
            rest += sock.recv(65536)
        with self._lock:
            self.requests.append(head)
        return head

    def _accept_loop(self) -> None:
        while True:
            try:
                sock, _ = self.listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                self.accepted += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _serve(self, sock: socket.socket) -> None:
        try:
            self.handle(self, sock)
        except OSError:
            pass  # the client went away
        finally:
            sock.close()


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


# Handlers ------------------------------------------------------------------------------


def answer_ok(server: RawServer, sock: socket.socket) -> None:
    """A well-behaved keep-alive participant: 200 to every request."""
    while server.read_request(sock) is not None:
        sock.sendall(OK + OK_BODY)


def close_after_reading(server: RawServer, sock: socket.socket) -> None:
    """Reads the request, then closes without a word (it may have acted on it)."""
    server.read_request(sock)


def never_answer(server: RawServer, sock: socket.socket) -> None:
    """Reads the request and holds the connection open until the client leaves."""
    server.read_request(sock)
    while sock.recv(1024):
        pass


def drip_body(server: RawServer, sock: socket.socket) -> None:
    """Announces 1000 bytes of body, then sends one every 0.5 s."""
    server.read_request(sock)
    sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n")
    for _ in range(1000):
        time.sleep(0.5)
        sock.sendall(b"x")


def drip_head(server: RawServer, sock: socket.socket) -> None:
    """Sends its status line and an endless header one byte every 0.2 s."""
    server.read_request(sock)
    for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"y" * 1000:
        sock.sendall(bytes([byte]))
        time.sleep(0.2)


def answer_once_then_reset(server: RawServer, sock: socket.socket) -> None:
    """Answers its first request; on that connection, the next request is never read: the
    connection is closed as it arrives (an idle close racing the client's reuse), which
    resets it. Later connections behave."""
    if server.read_request(sock) is None:
        return
    sock.sendall(OK + OK_BODY)
    if server.accepted == 1:
        sock.recv(1, socket.MSG_PEEK)  # the next request is there, unread: close → RST
        return
    answer_ok(server, sock)


def answer_then_close_when_idle(server: RawServer, sock: socket.socket) -> None:
    """Answers one request on a keep-alive connection, then closes it 50 ms later."""
    if server.read_request(sock) is not None:
        sock.sendall(OK + OK_BODY)
        time.sleep(0.05)
