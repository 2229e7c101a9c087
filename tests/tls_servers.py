"""Certificates and data stores that speak only TLS, for the encrypted-connection tests.

`Certificates` makes a CA, a server certificate it signs (for 127.0.0.1 and localhost) and
an unrelated CA (the "wrong" one) with openssl in a temp dir. `tls_postgres` is a
throwaway PostgreSQL with ssl=on whose pg_hba.conf accepts TCP clients over TLS only;
`tls_redis` a throwaway redis-server with a TLS port and no plain one. Both are the test's
own servers, killed by it; the shared ones are never touched.
"""

import contextlib
import shutil
import subprocess
import tempfile
from pathlib import Path

import redis

from tests.support import free_port, wait_until
from tests.throwaway_postgres import ThrowawayPostgres


def _openssl(*argv: str, cwd: Path) -> None:
    subprocess.run(["openssl", *argv], cwd=cwd, check=True, capture_output=True, timeout=60)


def _self_signed_ca(directory: Path, name: str) -> Path:
    _openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-subj", f"/CN=saga test {name}",
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


class Certificates:
    def __init__(self):
        self.root = Path(tempfile.mkdtemp(prefix="saga-tls-"))
        self.ca = _self_signed_ca(self.root, "ca")
        self.wrong_ca = _self_signed_ca(self.root, "wrong-ca")
        (self.root / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key",
            "-out", "server.csr", "-subj", "/CN=127.0.0.1",
            cwd=self.root,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "2", "-extfile", "san.ext", "-out", "server.crt",
            cwd=self.root,
        )  # fmt: skip
        self.cert = self.root / "server.crt"
        self.key = self.root / "server.key"

    def destroy(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


@contextlib.contextmanager
def tls_postgres(certificates: Certificates, database: str):
    """A throwaway PostgreSQL that takes TCP clients over TLS only; yields the server."""
    server = ThrowawayPostgres()
    try:
        # PostgreSQL wants its key owned by its own user and unreadable by others.
        for source, name in ((certificates.cert, "server.crt"), (certificates.key, "server.key")):
            target = server.root / name
            shutil.copy(source, target)
            shutil.chown(target, "postgres", "postgres")
            target.chmod(0o600)
        with (server.data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"ssl = on\nssl_cert_file = '{server.root / 'server.crt'}'\n"
                f"ssl_key_file = '{server.root / 'server.key'}'\n"
            )
        # hostssl only: a client that does not encrypt is refused, whatever it asks for.
        (server.data / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.1/32 trust\n"
        )
        server.start()
        server.create_database(database)  # psql's default sslmode (prefer) encrypts
        yield server
    finally:
        server.destroy()


@contextlib.contextmanager
def tls_redis(certificates: Certificates):
    """A redis-server listening on a TLS port only (clients need not present a
    certificate); yields its port."""
    port = free_port()
    process = subprocess.Popen(
        [
            shutil.which("redis-server"),
            "--port", "0",
            "--tls-port", str(port),
            "--bind", "127.0.0.1",
            "--tls-cert-file", str(certificates.cert),
            "--tls-key-file", str(certificates.key),
            "--tls-ca-cert-file", str(certificates.ca),
            "--tls-auth-clients", "no",
            "--save", "",
            "--appendonly", "no",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        wait_until(lambda: _answers_tls(port, certificates.ca), timeout=10, what="TLS redis")
        yield port
    finally:
        process.kill()
        process.wait(timeout=10)


def tls_redis_client(port: int, ca: Path) -> redis.Redis:
    return redis.Redis(
        host="127.0.0.1", port=port, ssl=True, ssl_ca_certs=str(ca), socket_timeout=2
    )


def _answers_tls(port: int, ca: Path) -> bool:
    try:
        return bool(tls_redis_client(port, ca).ping())
    except redis.RedisError:
        return False
