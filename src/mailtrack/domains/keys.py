"""DKIM keys: RSA-2048 generation, the public ``p=`` value, and encryption at rest.

Private keys are stored encrypted (AES-256-GCM) with a key derived from ``MAILTRACK_SECRET_KEY``
by HKDF-SHA256. Why not files of mode 0600: the database is the one thing every process of a
scaled-out install shares (API, workers on other machines), and a database dump or backup then
holds no usable key without the secret, which lives in the environment. The domain name is the
AEAD's associated data, so a key row copied to another domain does not decrypt.
"""

from __future__ import annotations

import base64
import os
import secrets
import time

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BITS = 2048
_VERSION = "v1"


class DkimKeyError(Exception):
    """A stored key cannot be decrypted (wrong MAILTRACK_SECRET_KEY, or a tampered row)."""


def _kek(secret: str) -> bytes:
    if not secret:
        raise DkimKeyError("MAILTRACK_SECRET_KEY is empty; DKIM keys cannot be encrypted")
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=b"mailtrack-dkim", info=b"dkim private key v1") \
        .derive(secret.encode())


def new_selector(now: float | None = None) -> str:
    """``mtYYYYMM`` plus 4 random hex digits: sortable by age, and unlikely to collide with the user's own."""
    return time.strftime("mt%Y%m", time.gmtime(now if now is not None else time.time())) + secrets.token_hex(2)


def generate() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=KEY_BITS)


def public_value(key: rsa.RSAPrivateKey) -> str:
    """Base64 of the SubjectPublicKeyInfo DER: the ``p=`` tag of the DKIM record."""
    der = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return base64.b64encode(der).decode()


def dkim_record(public: str) -> str:
    return f"v=DKIM1; k=rsa; p={public}"


def encrypt(key: rsa.RSAPrivateKey, secret: str, domain: str) -> str:
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    nonce = os.urandom(12)
    sealed = AESGCM(_kek(secret)).encrypt(nonce, der, domain.encode())
    return f"{_VERSION}:{base64.b64encode(nonce + sealed).decode()}"


def decrypt(stored: str, secret: str, domain: str) -> rsa.RSAPrivateKey:
    version, _, blob = stored.partition(":")
    if version != _VERSION:
        raise DkimKeyError(f"unknown key format {version!r}")
    raw = base64.b64decode(blob)
    try:
        der = AESGCM(_kek(secret)).decrypt(raw[:12], raw[12:], domain.encode())
    except InvalidTag as e:
        raise DkimKeyError(f"the DKIM key of {domain} does not decrypt with this MAILTRACK_SECRET_KEY") from e
    key = serialization.load_der_private_key(der, password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise DkimKeyError("not an RSA key")
    return key
