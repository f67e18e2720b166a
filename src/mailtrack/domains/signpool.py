"""DKIM signing in worker processes, so signatures use every core instead of taking the GIL of the one
process that also runs HTTP, SMTP and the database.

Two kinds of work go to the pool. ``sign``: signature headers for messages composed by the caller.
``prepare``: the whole of compose → sign for claimed recipients, so that the service process, where
every thread shares one GIL (and each HMAC or ``os.urandom`` call gives it up and queues to get it
back), is left with claiming, SMTP and recording. A batch is cut into one chunk per process; the
caller does no composing, RSA or canonicalization for it. Each chunk carries the key as DER, and a process
keeps the keys it has loaded, so a chunk costs one pickle of its messages on the way out and one of
their signature headers on the way back — a few hundred microseconds for a hundred messages, against
about a millisecond of signing per message.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ..compose import Composer, EmailSource

_KEYS: dict[bytes, rsa.RSAPrivateKey] = {}
_COMPOSERS: dict[tuple[str, str, str, tuple[str, ...]], Composer] = {}


@dataclass(frozen=True)
class SignAs:
    """What a pool process needs to sign as one identity (the key as PKCS#8 DER)."""

    domain: str
    selector: str
    der: bytes


@dataclass(frozen=True)
class Work:
    """Recipients ``(id, address)`` of one email, composed with ``return_path`` and signed ``sign_as``."""

    email: EmailSource
    recipients: list[tuple[str, str]]
    return_path: str | None
    sign_as: SignAs | None


# composer settings: secret, bounce domain, public URL, domains whose links are not tracked
Setup = tuple[str, str, str, tuple[str, ...]]


def _key(der: bytes) -> rsa.RSAPrivateKey:
    slot = hashlib.sha256(der).digest()
    key = _KEYS.get(slot)
    if key is None:
        loaded = serialization.load_der_private_key(der, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        key = _KEYS[slot] = loaded
    return key


def _sign_chunk(domain: str, selector: str, der: bytes, messages: list[bytes]) -> list[bytes]:
    """In a pool process: the DKIM-Signature header of each message."""
    from . import sign

    key = _key(der)
    return [sign.signature_header(m, domain=domain, selector=selector, key=key) for m in messages]


def _prepare_chunk(setup: Setup, work: list[Work]) -> list[tuple[str, bytes] | str]:
    """In a pool process: each recipient's (envelope sender, signed message), or why it could not be built
    (in order). Plain tuples, not ``Outgoing``: they unpickle several times faster in the service."""
    from . import sign

    composer = _COMPOSERS.get(setup)
    if composer is None:
        secret, bounce_domain, public_url, exclude = setup
        composer = _COMPOSERS[setup] = Composer(secret=secret, bounce_domain=bounce_domain, public_url=public_url,
                                                exclude_domains=exclude)
    out: list[tuple[str, bytes] | str] = []
    for w in work:
        key = _key(w.sign_as.der) if w.sign_as is not None else None
        for rid, address in w.recipients:
            try:
                msg = composer.compose(w.email, rid, address, return_path_host=w.return_path)
            except Exception as e:  # one bad email must not stop the others
                out.append(f"could not build the message: {e}")
                continue
            if w.sign_as is not None and key is not None:
                try:
                    header = sign.signature_header(msg.data, domain=w.sign_as.domain, selector=w.sign_as.selector,
                                                   key=key)
                except Exception as e:
                    out.append(f"could not sign the message: {e}")
                    continue
                out.append((msg.mail_from, header + msg.data))
            else:
                out.append((msg.mail_from, msg.data))
    return out


def _ready() -> None:
    """Run once in each new process: importing dkimpy and cryptography is the slow part of starting."""
    from . import sign  # noqa: F401


def default_processes() -> int:
    """One per core, at most 4; none on a single core (the service's own thread signs there).

    On two cores this means two signing processes next to the service process: the service needs a
    core only while it has work, and the scheduler gives the signers whatever it leaves."""
    cores = os.cpu_count() or 1
    return 0 if cores < 2 else min(cores, 4)


class SignPool:
    """Started on first use; ``spawn`` so no lock held by another thread is copied into a child."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is not None and getattr(self._pool, "_broken", False):  # a process died: start afresh
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"),
                                             initializer=_ready)
        return self._pool

    def sign(self, domain: str, selector: str, key: rsa.RSAPrivateKey, messages: list[bytes]) -> list[bytes]:
        """Signature headers for ``messages``, in order, split over the processes."""
        if not messages:
            return []
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        size = -(-len(messages) // self.processes)
        pool = self._get()
        futures = [pool.submit(_sign_chunk, domain, selector, der, messages[i:i + size])
                   for i in range(0, len(messages), size)]
        out: list[bytes] = []
        for f in futures:
            out += f.result()
        return out

    def warm(self) -> None:
        """Start the processes now, so the first batch does not wait for them to import."""
        pool = self._get()
        for _ in range(self.processes):
            pool.submit(_ready)

    def prepare(self, setup: Setup, work: list[Work]) -> list[tuple[list[Work], Future[list[tuple[str, bytes] | str]]]]:
        """Compose and sign ``work`` in the processes: (the chunk, its future results) per process."""
        total = sum(len(w.recipients) for w in work)
        size = -(-total // self.processes)
        chunks: list[list[Work]] = [[]]
        room = size
        for w in work:
            rest = w.recipients
            while rest:  # an email with many recipients is split over the chunks, each builds its template
                if room == 0:
                    chunks.append([])
                    room = size
                take, rest = rest[:room], rest[room:]
                chunks[-1].append(Work(w.email, take, w.return_path, w.sign_as))
                room -= len(take)
        pool = self._get()
        return [(c, pool.submit(_prepare_chunk, setup, c)) for c in chunks if c]

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
