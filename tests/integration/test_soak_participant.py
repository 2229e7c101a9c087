"""The soak's participant server (bench/soak_participant.py) over real loopback sockets:
a slow call ends when its caller hangs up, and a second call with the same key is
"overlapped" only while the first one's connection is really open."""

import socket
import time

from bench.soak_participant import ParticipantServer
from tests.support import wait_until


def slow_only(phase: str) -> dict[str, int]:
    return {"slow": 1}


def send(port: int, key: str) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /d/step HTTP/1.1\r\nHost: p\r\nIdempotency-Key: {key}\r\n"
        f"X-Saga-Id: s1\r\nX-Saga-Step: step\r\nContent-Length: 2\r\n\r\n{{}}"
    )
    sock.sendall(head.encode())
    return sock


def test_same_key_overlap_is_seen_only_while_the_first_call_is_open():
    # Slow answers hold the call 16-26 s (1.6-2.6 timeouts) unless the caller hangs up.
    server = ParticipantServer(seed=1, timeout=10.0, retry_after=30, weights=slow_only)
    server.start()
    port = server.server.server_address[1]
    recorder = server.recorder
    try:
        first = send(port, "s1:step:action")
        wait_until(lambda: len(recorder.snapshot()) == 1, what="first call read")
        second = send(port, "s1:step:action")
        wait_until(lambda: len(recorder.snapshot()) == 2, what="second call read")
        assert recorder.snapshot()[1].overlapped == [0]

        first.close()
        second.close()
        closed_at = time.time()
        wait_until(lambda: recorder.open_count() == 0, what="both calls ended")
        ended = recorder.snapshot()[0]
        assert ended.end == "peer_closed" and ended.ended - closed_at < 5

        third = send(port, "s1:step:action")
        wait_until(lambda: len(recorder.snapshot()) == 3, what="third call read")
        assert recorder.snapshot()[2].overlapped == []
        third.close()
    finally:
        server.stop()
