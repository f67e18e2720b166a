"""Signed tokens naming one recipient (and one link): VERP local parts, pixel and click URLs.

A token is ``<payload>-<mac>`` where mac = first 128 bits of HMAC-SHA256(secret, purpose:payload)
in lowercase hex, so tokens survive case-folding MTAs and cannot be forged or moved to another
recipient without the secret.
"""

from __future__ import annotations

import hmac
import re

_MAC_HEX = 32
_PAYLOAD = re.compile(r"[0-9a-z]{1,64}(?:-[0-9]{1,6})?")


def _mac(secret: str, purpose: str, payload: str) -> str:
    # hmac.digest is the one-shot C path: cheaper than hmac.new (compose makes ~7 per message)
    return hmac.digest(secret.encode(), f"{purpose}:{payload}".encode(), "sha256").hex()[:_MAC_HEX]


def sign(secret: str, purpose: str, payload: str) -> str:
    return f"{payload}-{_mac(secret, purpose, payload)}"


def verify(secret: str, purpose: str, token: str) -> str | None:
    """The payload of a genuine token, else None."""
    if len(token) > 128:
        return None
    payload, _, mac = token.lower().rpartition("-")
    if not payload or len(mac) != _MAC_HEX or not _PAYLOAD.fullmatch(payload):
        return None
    if not hmac.compare_digest(mac, _mac(secret, purpose, payload)):
        return None
    return payload


def verp_address(secret: str, recipient_id: str, bounce_domain: str) -> str:
    return f"bounces+{sign(secret, 'verp', recipient_id)}@{bounce_domain}"


def recipient_from_verp(secret: str, address: str) -> str | None:
    """Recipient id from a VERP address ``bounces+TOKEN@domain`` (any case), else None."""
    local = address.strip().strip("<>").rpartition("@")[0].lower()
    if not local.startswith("bounces+"):
        return None
    return verify(secret, "verp", local[len("bounces+"):])


def open_token(secret: str, recipient_id: str) -> str:
    return sign(secret, "open", recipient_id)


def click_token(secret: str, recipient_id: str, link_index: int) -> str:
    return sign(secret, "click", f"{recipient_id}-{link_index}")


def parse_click(secret: str, token: str) -> tuple[str, int] | None:
    payload = verify(secret, "click", token)
    if payload is None or "-" not in payload:
        return None
    rid, _, idx = payload.partition("-")
    return rid, int(idx)


def unsubscribe_token(secret: str, recipient_id: str) -> str:
    return sign(secret, "unsubscribe", recipient_id)


def parse_unsubscribe(secret: str, token: str) -> str | None:
    """Recipient id of a genuine one-click unsubscribe token (URL or mailto local part), else None."""
    return verify(secret, "unsubscribe", token)
