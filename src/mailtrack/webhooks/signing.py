"""Standard Webhooks signatures: ``webhook-id``, ``webhook-timestamp``, ``webhook-signature``.

The signature is ``v1,`` + base64(HMAC-SHA256(secret, "{id}.{timestamp}.{body}")); during a secret
rotation the header carries one signature per secret, separated by spaces, as the spec allows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache

from standardwebhooks.webhooks import Webhook


@lru_cache(maxsize=1024)
def _signer(secret: str) -> Webhook:
    return Webhook(secret)


@lru_cache(maxsize=4)
def _moment(timestamp: int) -> datetime:
    """The datetime ``Webhook.sign`` takes, made once per second rather than once per POST."""
    return datetime.fromtimestamp(timestamp, UTC)


def headers(secrets: list[str], msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three headers that let a receiver check the POST came from us, unchanged and recently."""
    at = _moment(timestamp)
    sig = " ".join([_signer(s).sign(msg_id, at, body) for s in secrets])
    return {"webhook-id": msg_id, "webhook-timestamp": str(timestamp), "webhook-signature": sig}


def header_lines(secrets: list[str], msg_id: str, timestamp: int, body: bytes) -> bytes:
    """The same three headers as HTTP/1.1 header lines (``msg_id`` is ours: ASCII, no CR/LF).

    Built directly rather than from ``headers``' dict: this runs for every POST."""
    at, data = _moment(timestamp), body.decode()
    if len(secrets) == 1:
        sig = _signer(secrets[0]).sign(msg_id, at, data)
    else:
        sig = " ".join([_signer(s).sign(msg_id, at, data) for s in secrets])
    return b"webhook-id: %s\r\nwebhook-timestamp: %d\r\nwebhook-signature: %s\r\n" % (
        msg_id.encode("ascii"), timestamp, sig.encode("ascii"))
