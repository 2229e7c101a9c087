"""The participant HTTP client against real sockets: which failures are uncertain (§4),
the call's timeout bounding the whole call, keep-alive reuse and its bounds, IPv6 literals.
No database: these call `participant_call` directly."""

import socket
import ssl
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from sagas.engine import connections
from sagas.engine import participants as client
from sagas.engine.participants import ParticipantRequest, participant_call
from tests.raw_server import (
    RawServer,
    answer_ok,
    answer_once_then_reset,
    answer_then_close_when_idle,
    close_after_reading,
    drip_body,
    drip_head,
    never_answer,
)
from tests.support import free_port, wait_until


@pytest.fixture
def servers():
    started: list[RawServer] = []

    def start(handle, host="127.0.0.1") -> RawServer:
        server = RawServer(handle, host)
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def call(url: str, timeout: float = 5.0):
    headers = {"Content-Type": "application/json", "Idempotency-Key": "s-1:pay:action"}
    request = ParticipantRequest("POST", url, headers, b'{"amount":5}', timeout)
    return participant_call(request, max_bytes=1 << 20, allowed_hosts=[])


def in_new_thread(scenario):
    """Run `scenario` in a thread of its own (a fresh connection pool); its result."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(scenario).result()


# Before anything was sent: retryable and certain ------------------------------------


def test_a_refused_connection_is_certain():
    result = call(f"http://127.0.0.1:{free_port()}/pay")
    assert (result.outcome, result.uncertain) == ("retryable_error", False)
    assert result.error.startswith("connection failed: [Errno 111]")


def test_a_name_that_does_not_resolve_is_certain(monkeypatch):
    def no_such_name(host, port, *args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(client, "_resolve", no_such_name)  # stands in for DNS
    monkeypatch.setattr(client, "_resolved", {})
    monkeypatch.setattr(client, "_verdicts", {})
    result = call(f"http://nowhere.test:{free_port()}/pay")
    assert (result.outcome, result.uncertain) == ("retryable_error", False)
    assert result.error == "connection failed: [Errno -2] Name or service not known"


def test_a_resolver_that_hangs_is_bounded_by_the_call_timeout_and_certain(monkeypatch):
    answered = threading.Event()

    def stuck_dns(host, port, *args, **kwargs):
        answered.wait(10)  # the system resolver's own timeout, far past the call's
        raise socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution")

    monkeypatch.setattr(client, "_resolve", stuck_dns)  # stands in for DNS
    monkeypatch.setattr(client, "_resolved", {})
    monkeypatch.setattr(client, "_verdicts", {})
    started = time.monotonic()
    result = call(f"http://stuck.test:{free_port()}/pay", timeout=0.5)
    took = time.monotonic() - started
    answered.set()

    assert took < 1.5
    assert (result.outcome, result.uncertain) == ("retryable_error", False)
    assert result.error.startswith("timed out after 0.5 s")
    assert client._verdicts == {}  # a lookup given up on is no verdict to keep


def test_a_tls_handshake_failure_is_certain(servers):
    def plain_http(server, sock):
        sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        sock.recv(1024)

    server = servers(plain_http)
    result = call(f"https://127.0.0.1:{server.port}/pay")
    assert (result.outcome, result.uncertain) == ("retryable_error", False)
    assert result.error.startswith("connection failed: [SSL")
    assert server.requests == []


def test_a_connect_timeout_is_certain():
    # A listener whose accept queue is full: the handshake never completes.
    with socket.socket() as listener, socket.socket() as queued:
        listener.bind(("127.0.0.1", 0))
        listener.listen(0)
        queued.connect(listener.getsockname())
        started = time.monotonic()
        result = call(f"http://127.0.0.1:{listener.getsockname()[1]}/pay", timeout=0.5)
    assert time.monotonic() - started < 1.0
    assert (result.outcome, result.uncertain) == ("retryable_error", False)
    assert result.error == "timed out after 0.5 s before the request was sent"


# After sending: uncertain ---------------------------------------------------------------


def test_a_connection_lost_after_the_request_was_read_is_uncertain(servers):
    server = servers(close_after_reading)
    result = call(server.url("/pay"))
    assert (result.outcome, result.uncertain) == ("retryable_error", True)
    assert result.error.startswith("connection failed: Remote end closed connection")
    assert len(server.requests) == 1  # a new connection: not sent again


def test_no_answer_within_the_timeout_is_uncertain(servers):
    server = servers(never_answer)
    result = call(server.url("/pay"), timeout=0.3)
    assert (result.outcome, result.uncertain) == ("retryable_error", True)
    assert result.error == "timed out after 0.3 s"
    assert 300 <= result.duration_ms < 800


# The timeout bounds the whole call ------------------------------------------------------


def test_a_body_dripped_a_byte_every_half_second_ends_at_the_timeout(servers):
    server = servers(drip_body)  # Content-Length: 1000, then one byte every 0.5 s
    started = time.monotonic()
    result = call(server.url("/pay"), timeout=2)
    elapsed = time.monotonic() - started
    assert 2.0 <= elapsed < 2.6
    assert (result.outcome, result.uncertain) == ("retryable_error", True)
    assert result.error == "timed out after 2 s"


def test_a_dripped_status_line_and_headers_end_at_the_timeout(servers):
    server = servers(drip_head)  # one byte every 0.2 s, never a complete head
    started = time.monotonic()
    result = call(server.url("/pay"), timeout=1)
    assert 1.0 <= time.monotonic() - started < 1.5
    assert (result.outcome, result.uncertain, result.error) == (
        "retryable_error",
        True,
        "timed out after 1 s",
    )


# Keep-alive ------------------------------------------------------------------------------


def test_a_connection_closed_while_idle_is_replaced_and_a_gone_participant_is_certain(
    servers,
):
    server = servers(answer_then_close_when_idle)

    def scenario():
        first = call(server.url("/pay"))
        time.sleep(0.2)  # the participant has closed the idle connection by now
        second = call(server.url("/pay"))
        time.sleep(0.2)
        server.close()  # the participant is gone: its next connection is refused
        third = call(server.url("/pay"))
        return first, second, third

    first, second, third = in_new_thread(scenario)
    assert first.outcome == second.outcome == "succeeded"
    assert server.accepted == 2
    # Nothing reached anyone: the dead connection was noticed before sending.
    assert (third.outcome, third.uncertain) == ("retryable_error", False)
    assert third.error.startswith("connection failed: [Errno 111]")


def test_a_reused_connection_reset_before_any_answer_is_uncertain_and_not_sent_again(servers):
    # The participant closes the idle connection just as the next request arrives (the
    # race the idle check cannot see). The client cannot tell whether it was read: the
    # attempt is uncertain and is not re-sent within itself (one call per logged attempt).
    server = servers(answer_once_then_reset)

    def scenario():
        return call(server.url("/pay")), call(server.url("/pay"))

    first, second = in_new_thread(scenario)
    assert first.outcome == "succeeded"
    assert (second.outcome, second.uncertain) == ("retryable_error", True)
    assert server.accepted == 1  # no second connection within the attempt
    assert len(server.requests) == 1


def test_connections_per_thread_are_bounded_least_recently_used_first(servers, monkeypatch):
    monkeypatch.setattr(connections, "MAX_PER_THREAD", 2)
    a, b, c = servers(answer_ok), servers(answer_ok), servers(answer_ok)

    def scenario():
        for server in (a, b, a, c):  # a used again: b is the least recently used
            assert call(server.url("/pay")).outcome == "succeeded"
        wait_until(lambda: b.closed_by_client == 1, timeout=2, what="b's connection closed")
        kept = [key[2] for key in connections.thread_pool().connections]
        return kept, a.closed_by_client, c.closed_by_client

    assert in_new_thread(scenario) == ([a.port, c.port], 0, 0)
    assert (a.accepted, b.accepted, c.accepted) == (1, 1, 1)


def test_idle_connections_are_closed(servers, monkeypatch):
    monkeypatch.setattr(connections, "IDLE_SECONDS", 0.2)
    a, b = servers(answer_ok), servers(answer_ok)

    def scenario():
        assert call(a.url("/pay")).outcome == "succeeded"
        time.sleep(0.3)
        assert call(b.url("/pay")).outcome == "succeeded"
        return [key[2] for key in connections.thread_pool().connections]

    assert in_new_thread(scenario) == [b.port]
    wait_until(lambda: a.closed_by_client == 1, timeout=2, what="a's idle connection closed")


# TLS ---------------------------------------------------------------------------------------


@pytest.fixture
def certificate(tmp_path):
    """A self-signed certificate for 127.0.0.1: (cert file, key file)."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"]
        + ["-nodes", "-days", "1", "-subj", "/CN=participant", "-keyout", str(key)]
        + ["-out", str(cert), "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )
    return cert, key


def test_https_is_verified_and_kept_alive(servers, certificate, monkeypatch):
    cert, key = certificate
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = servers(lambda server, sock: answer_ok(server, context.wrap_socket(sock, True)))
    url = f"https://127.0.0.1:{server.port}/pay"

    untrusted = in_new_thread(lambda: call(url))
    assert (untrusted.outcome, untrusted.uncertain) == ("retryable_error", False)
    assert "CERTIFICATE_VERIFY_FAILED" in untrusted.error

    monkeypatch.setenv("SSL_CERT_FILE", str(cert))  # read by the next thread's TLS context
    trusted = in_new_thread(lambda: [call(url), call(url)])
    assert [r.response for r in trusted] == [{"ok": True}, {"ok": True}]
    assert server.accepted == 2  # the untrusted handshake, then one kept-alive connection
    assert [h.split(b"\r\n")[1] for h in server.requests] == [
        f"Host: 127.0.0.1:{server.port}".encode()
    ] * 2


# IPv6 literals ---------------------------------------------------------------------------


def test_an_ipv6_literal_url_connects_to_the_literal(servers):
    server = servers(answer_ok, host="::1")
    result = call(f"http://[::1]:{server.port}/pay")
    assert result.outcome == "succeeded" and result.response == {"ok": True}
    (head,) = server.requests
    assert f"Host: [::1]:{server.port}".encode() in head.split(b"\r\n")
