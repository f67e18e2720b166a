"""The delivery pipeline's ``sign`` step for sending domains: which key signs a From domain, and
which aligned return path it uses. Reads the store at most every ``refresh`` seconds, so a domain
starts being signed soon after its check passes, without a query per message."""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..compose import EmailSource, Outgoing
from ..config import Config
from ..store import domains as dstore
from ..store.db import Store
from . import dnscheck, keys, sign
from .names import from_domain
from .signpool import Setup as ComposerSetup
from .signpool import SignAs, SignPool, Work, default_processes

log = logging.getLogger("mailtrack.domains")


@dataclass(frozen=True)
class Identity:
    account_id: int
    domain: str
    selector: str
    key: rsa.RSAPrivateKey
    return_path: str | None  # only once its CNAME checks out, else bounces would go nowhere
    der: bytes = b""  # the key as PKCS#8 DER, for the signing processes


def _der(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class DkimSigner:
    """Signs with the active key of the From domain (or of its nearest registered parent)."""

    def __init__(self, store: Store, config: Config, *, refresh: float = 30.0, processes: int | None = None,
                 pool_threshold: int = 16) -> None:
        self.store = store
        self.config = config
        self.refresh_every = refresh
        self._table: dict[str, Identity] = {}
        self._keys: dict[tuple[str, str, str], tuple[rsa.RSAPrivateKey, bytes]] = {}
        self._next = 0.0
        self._lock = threading.Lock()
        self.signed = 0
        self.prepared_in_pool = 0  # recipients composed and signed by the signing processes
        n = default_processes() if processes is None else processes
        self.pool = SignPool(n) if n > 0 else None
        self.pool_threshold = pool_threshold

    def refresh(self) -> None:
        with self.store.read() as conn:
            found = dstore.listing(conn)
        table: dict[str, Identity] = {}
        for d in found:
            active = next((k for k in d.keys if k.state == "active"), None)
            if active is None:
                continue
            cache_key = (d.domain, active.selector, active.private_key)
            loaded = self._keys.get(cache_key)
            if loaded is None:
                try:
                    key = keys.decrypt(active.private_key, self.config.secret_key, d.domain)
                except keys.DkimKeyError as e:
                    log.error("not signing for %s: %s", d.domain, e)
                    continue
                loaded = self._keys[cache_key] = (key, _der(key))
            rp_ok = d.return_path and d.checks.get(f"CNAME {d.return_path}", {}).get("status") == dnscheck.OK
            table[d.domain] = Identity(d.account_id, d.domain, active.selector, loaded[0],
                                       d.return_path if rp_ok else None, loaded[1])
        self._table = table

    def _current(self) -> dict[str, Identity]:
        now = time.monotonic()
        if now >= self._next:
            with self._lock:
                if now >= self._next:
                    try:
                        self.refresh()
                    except Exception:  # the store is busy or down: sign with what we had
                        log.exception("reading the sending domains failed")
                    self._next = now + self.refresh_every
        return self._table

    def identity(self, email: EmailSource) -> Identity | None:
        domain = from_domain(email.from_addr)
        if not domain:
            return None
        table = self._current()
        labels = domain.split(".")
        for i in range(len(labels) - 1):
            hit = table.get(".".join(labels[i:]))
            if hit is not None:
                # only the account that owns the domain signs as it; anyone else's mail goes out unsigned
                return hit if hit.account_id == email.account_id else None
        return None

    def return_path(self, email: EmailSource) -> str | None:
        ident = self.identity(email)
        return ident.return_path if ident else None

    def sign(self, email: EmailSource, out: Outgoing) -> Outgoing:
        ident = self.identity(email)
        if ident is None:
            return out
        self.signed += 1
        return dataclasses.replace(out, data=sign.sign(out.data, domain=ident.domain, selector=ident.selector,
                                                       key=ident.key))

    def sign_many(self, items: list[tuple[EmailSource, Outgoing]]) -> list[Outgoing]:
        """``sign`` for a batch: messages of one identity are signed together, in the pool when it is big."""
        out = [o for _, o in items]
        groups: dict[tuple[int, str, str], tuple[Identity, list[int]]] = {}
        known: dict[str, Identity | None] = {}  # per email, not per recipient
        for i, (email, _) in enumerate(items):
            if email.id not in known:
                known[email.id] = self.identity(email)
            ident = known[email.id]
            if ident is not None:
                groups.setdefault((ident.account_id, ident.domain, ident.selector), (ident, []))[1].append(i)
        for ident, idx in groups.values():
            data = [out[i].data for i in idx]
            if self.pool is not None and len(data) >= self.pool_threshold:
                headers = self.pool.sign(ident.domain, ident.selector, ident.key, data)
            else:
                headers = [sign.signature_header(d, domain=ident.domain, selector=ident.selector, key=ident.key)
                           for d in data]
            for i, h in zip(idx, headers, strict=True):
                out[i] = dataclasses.replace(out[i], data=h + out[i].data)
            self.signed += len(idx)
        return out

    def warm(self) -> None:
        """Start the signing processes when some domain signs, so the first batch does not wait for them."""
        if self.pool is not None and self._current():
            self.pool.warm()

    def prepare_many(self, setup: ComposerSetup, items: list[tuple[EmailSource, str, str]]
                     ) -> list[tuple[list[int], Future[list[tuple[str, bytes] | str]]]] | None:
        """compose → sign for ``(email, recipient id, address)`` items in the signing processes: (the items'
        indexes, their future messages or error strings) per chunk. None (do it here) when there is no
        pool, the batch is small, or none of it is signed (composing alone is not worth the round trip)."""
        if self.pool is None or len(items) < self.pool_threshold:
            return None
        known: dict[str, Identity | None] = {}
        for email, _, _ in items:
            if email.id not in known:
                known[email.id] = self.identity(email)
        if not any(known.values()):
            return None
        work: list[Work] = []
        order: list[int] = []
        for i, (email, rid, address) in enumerate(items):
            ident = known[email.id]
            if work and work[-1].email.id == email.id:
                work[-1].recipients.append((rid, address))
            else:
                sign_as = SignAs(ident.domain, ident.selector, ident.der) if ident is not None else None
                work.append(Work(email, [(rid, address)], ident.return_path if ident else None, sign_as))
            order.append(i)
        out: list[tuple[list[int], Future[list[tuple[str, bytes] | str]]]] = []
        pos = 0
        for chunk, future in self.pool.prepare(setup, work):
            n = sum(len(w.recipients) for w in chunk)
            out.append((order[pos:pos + n], future))
            pos += n
        self.signed += sum(len(w.recipients) for w in work if w.sign_as is not None)
        self.prepared_in_pool += len(items)
        return out

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
