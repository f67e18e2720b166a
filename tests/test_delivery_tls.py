"""STARTTLS and smarthost AUTH against a real aiosmtpd server with a throw-away certificate on loopback."""

from __future__ import annotations

import asyncio
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailtrack.delivery.worker import Worker
from mailtrack.store.db import Store
from tests.conftest import Api, email_body, make_config
from tests.helpers.worker import run_until
from tests.test_delivery import FAST, all_final, by_address

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("tls")
    crt, key = d / "cert.pem", d / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(crt)],
                   check=True, capture_output=True)
    yield crt, key


class Handler:
    def __init__(self) -> None:
        self.tls_used: list[bool] = []
        self.logins: list[str] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.tls_used.append(session.ssl is not None)
        return "250 2.0.0 Ok: queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
        if isinstance(data, LoginPassword) and (data.login, data.password) == (b"relay-user", b"right"):
            self.logins.append(data.login.decode())
            return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


async def start(handler: Handler, cert: tuple[Path, Path] | None, auth: bool = False) -> tuple[asyncio.Server, int]:
    ctx = None
    if cert is not None:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(cert[0]), str(cert[1]))
    kw: dict[str, Any] = {"authenticator": handler.authenticate, "auth_require_tls": True} if auth else {}
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler, hostname="relay.test", tls_context=ctx, **kw),
                                      "127.0.0.1", 0)
    return server, int(server.sockets[0].getsockname()[1])


@pytest.fixture
async def tls_server(cert: tuple[Path, Path]) -> AsyncIterator[tuple[Handler, int]]:
    handler = Handler()
    server, port = await start(handler, cert)
    yield handler, port
    server.close()
    await server.wait_closed()


async def test_starttls_is_used_when_offered(tls_server: tuple[Handler, int], sqlite_store: Store,
                                             tmp_path: Path) -> None:
    handler, port = tls_server
    config = make_config(tmp_path, transport_map=f"*=127.0.0.1:{port}", require_tls="true", **FAST)
    eid = Api(sqlite_store, config).post("/api/v1/emails", email_body(to=["a@x.test"], cc=[], bcc=[])).json()["id"]
    await run_until(Worker(config, sqlite_store), all_final(sqlite_store))
    rc, _ = by_address(sqlite_store, 1, eid)
    assert rc["a@x.test"]["status"] == "sent"
    assert handler.tls_used == [True]


@pytest.mark.parametrize(("password", "status"), [("right", "sent"), ("wrong", "deferred")])
async def test_smarthost_auth(cert: tuple[Path, Path], sqlite_store: Store, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch, password: str, status: str) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(cert[0]))  # the smarthost's certificate is verified: trust ours
    handler = Handler()
    server, port = await start(handler, cert, auth=True)
    try:
        config = make_config(tmp_path, smarthost=f"127.0.0.1:{port}", smarthost_user="relay-user",
                             smarthost_password=password, **{**FAST, "retry_schedule": "1h", "max_queue_age": "1d"})
        eid = Api(sqlite_store, config).post("/api/v1/emails",
                                             email_body(to=["a@x.test"], cc=[], bcc=[])).json()["id"]

        def settled() -> bool:
            rc, _ = by_address(sqlite_store, 1, eid)
            return rc["a@x.test"]["status"] != "spooled"

        await run_until(Worker(config, sqlite_store), settled)
    finally:
        server.close()
        await server.wait_closed()
    rc, _ = by_address(sqlite_store, 1, eid)
    r = rc["a@x.test"]
    assert r["status"] == status
    if status == "sent":
        assert handler.logins == ["relay-user"] and handler.tls_used == [True]
    else:
        # our credentials are wrong: retried later, never bounced as if the address were bad
        assert r["reason"].startswith("535") and handler.tls_used == []


async def test_certificate_of_smarthost_is_verified(cert: tuple[Path, Path], sqlite_store: Store,
                                                    tmp_path: Path) -> None:
    handler = Handler()
    server, port = await start(handler, cert)  # self-signed, and not trusted here
    try:
        config = make_config(tmp_path, smarthost=f"127.0.0.1:{port}", **{**FAST, "retry_schedule": "1h"})
        eid = Api(sqlite_store, config).post("/api/v1/emails",
                                             email_body(to=["a@x.test"], cc=[], bcc=[])).json()["id"]

        def settled() -> bool:
            return by_address(sqlite_store, 1, eid)[0]["a@x.test"]["status"] != "spooled"

        await run_until(Worker(config, sqlite_store), settled)
    finally:
        server.close()
        await server.wait_closed()
    r = by_address(sqlite_store, 1, eid)[0]["a@x.test"]
    assert r["status"] == "deferred" and r["reason"].startswith(f"TLS with 127.0.0.1:{port}")
    assert handler.tls_used == []
