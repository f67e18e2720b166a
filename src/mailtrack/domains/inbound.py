"""What the inbound server needs from sending domains: the return-path hosts it must accept VERP mail
at (cached, one query per ``ttl``), and mailto unsubscribes (``unsubscribe+TOKEN@`` the bounce domain)."""

from __future__ import annotations

import threading
import time

from .. import tokens
from ..store import domains as dstore
from ..store import unsubscribes
from ..store.db import Store


class ReturnPathHosts:
    def __init__(self, store: Store, ttl: float = 30.0) -> None:
        self.store = store
        self.ttl = ttl
        self._hosts: frozenset[str] = frozenset()
        self._next = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> frozenset[str]:
        if time.monotonic() >= self._next:
            with self._lock:
                if time.monotonic() >= self._next:
                    with self.store.read() as conn:
                        self._hosts = frozenset(d.return_path for d in dstore.listing(conn) if d.return_path)
                    self._next = time.monotonic() + self.ttl
        return self._hosts


def unsubscribe_token(address: str) -> str | None:
    """The token of an ``unsubscribe+TOKEN@…`` address, else None."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    return local[len("unsubscribe+"):] if local.startswith("unsubscribe+") else None


def mailto_unsubscribe(store: Store, secret: str, rcpt_tos: list[str]) -> bool:
    """Apply the unsubscribe addresses among ``rcpt_tos``; True when every recipient was one."""
    toks = [unsubscribe_token(r) for r in rcpt_tos]
    if not toks or any(t is None for t in toks):
        return False
    with store.write() as conn:
        for t in toks:
            rid = tokens.parse_unsubscribe(secret, t or "")
            if rid is not None:  # a forged token is accepted and ignored, like any unknown report
                unsubscribes.unsubscribe(conn, rid, "mailto")
    return True
