"""DKIM signing in worker processes, so signatures use the other cores instead of the one that also runs
HTTP, SMTP and the database. Each process gets the key as DER with every chunk and keeps it loaded, so a
chunk costs one pickle of the messages and one of their signature headers."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

_KEYS: dict[bytes, rsa.RSAPrivateKey] = {}


def _sign_chunk(domain: str, selector: str, der: bytes, messages: list[bytes]) -> list[bytes]:
    """In a pool process: the DKIM-Signature header of each message."""
    from . import sign

    slot = hashlib.sha256(der).digest()
    key = _KEYS.get(slot)
    if key is None:
        loaded = serialization.load_der_private_key(der, password=None)
        assert isinstance(loaded, rsa.RSAPrivateKey)
        key = _KEYS[slot] = loaded
    return [sign.signature_header(m, domain=domain, selector=selector, key=key) for m in messages]


def default_processes() -> int:
    """One per core but the first (which runs the service), at most 4; none on a single core."""
    return max(0, min((os.cpu_count() or 1) - 1, 4))


class SignPool:
    """Started on first use; ``spawn`` so no lock held by another thread is copied into a child."""

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self._pool: ProcessPoolExecutor | None = None

    def _get(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.processes, mp_context=multiprocessing.get_context("spawn"))
        return self._pool

    def sign(self, domain: str, selector: str, key: rsa.RSAPrivateKey, messages: list[bytes]) -> list[bytes]:
        """Signature headers for ``messages``, split over the processes and the calling thread."""
        der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        parts = self.processes + 1
        size = -(-len(messages) // parts)
        chunks = [messages[i:i + size] for i in range(0, len(messages), size)]
        futures = [self._get().submit(_sign_chunk, domain, selector, der, c) for c in chunks[1:]]
        from . import sign

        out = [sign.signature_header(m, domain=domain, selector=selector, key=key) for m in chunks[0]]
        for f in futures:
            out += f.result()
        return out

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
