"""Is an email's From domain authenticated (a verified sending domain of its account)? And the
``MAILTRACK_UNVERIFIED_FROM`` policy: ``send`` (unsigned, and the views say why) or ``refuse`` (422)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from typing import TypedDict

from sqlalchemy import Connection

from ..errors import InputError
from ..store import domains as dstore
from ..store.db import Store
from .names import from_domain

TTL = 10.0


class Authentication(TypedDict):
    authenticated: bool
    why: str


def verified(conn: Connection, account_id: int) -> set[str]:
    """The account's sending domains whose DKIM key checks out (they sign)."""
    return {d.domain for d in dstore.listing(conn, account_id) if any(k.state == "active" for k in d.keys)}


def authentication(from_addr: str, domains: set[str]) -> Authentication:
    domain = from_domain(from_addr) or ""
    labels = domain.split(".")
    for i in range(max(len(labels) - 1, 0)):
        if ".".join(labels[i:]) in domains:
            return Authentication(authenticated=True, why=f"DKIM-signed as {'.'.join(labels[i:])}")
    return Authentication(authenticated=False, why=f"{domain or 'the From address'} is not a verified sending domain "
                          "of this account, so the mail goes out unsigned and big mailbox providers may junk or "
                          f"reject it; add it with `mailtrack domain add {domain or 'DOMAIN'}` and publish its records")


class _Cache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[int, int], tuple[float, set[str]]] = {}

    def get(self, store: Store, account_id: int) -> set[str]:
        slot = (id(store), account_id)
        hit = self._entries.get(slot)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        with store.read() as conn:
            found = verified(conn, account_id)
        with self._lock:
            if len(self._entries) > 10_000:
                self._entries.clear()
            self._entries[slot] = (time.monotonic() + TTL, found)
        return found


CACHE = _Cache()


def enforce(store: Store, policy: str, account_id: int, from_addrs: Iterable[tuple[str, str]]) -> None:
    """Under ``refuse``, a 422 naming the first From domain that is not verified; (field, address) pairs."""
    if policy != "refuse":
        return
    domains = CACHE.get(store, account_id)
    for field, addr in from_addrs:
        if not authentication(addr, domains)["authenticated"]:
            d = from_domain(addr) or addr
            raise InputError(f"the From domain {d} is not a verified sending domain of this account and "
                             "MAILTRACK_UNVERIFIED_FROM=refuse; verify it with `mailtrack domain add` and "
                             "`mailtrack domain check`", field=field)
