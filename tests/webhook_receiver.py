"""A real HTTP webhook receiver on port 0 that checks every Standard Webhooks signature itself.

The check is the spec's HMAC computed here (not the library mailtrack signs with): base64 of
HMAC-SHA256 over ``{webhook-id}.{webhook-timestamp}.{body}``, keyed with the base64-decoded part of
the ``whsec_`` secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def spec_signature(secret: str, msg_id: str, timestamp: str, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def verified_by(secret: str, headers: dict[str, str], body: bytes) -> bool:
    expected = spec_signature(secret, headers["webhook-id"], headers["webhook-timestamp"], body)
    return any(hmac.compare_digest(expected, s) for s in headers["webhook-signature"].split())


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Answers each path with ``answers[path]`` (a status, or a function of the request count)."""

    answers: dict[str, int | Callable[[int], int]] = field(default_factory=dict)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> Receiver:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with outer.lock:
                    outer.got.append(Received(self.path, {k.lower(): v for k, v in self.headers.items()}, body))
                    n = sum(1 for r in outer.got if r.path == self.path)
                answer = outer.answers.get(self.path, 200)
                code = answer(n) if callable(answer) else answer
                reply = b"x" * 5000 if self.path == "/big" else b'{"ok":true}'
                self.send_response(code)
                if code in (301, 302, 307, 308):
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            def log_message(self, *_args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def on(self, path: str) -> list[Received]:
        with self.lock:
            return [r for r in self.got if r.path == path]

    def events(self, path: str = "/hook") -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for r in self.on(path):
            body = r.json()
            out += body if isinstance(body, list) else [body]
        return out


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")
