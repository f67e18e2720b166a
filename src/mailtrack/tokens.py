"""Signed tokens naming one recipient (and one link): VERP local parts, pixel and click URLs.

A token is ``<payload>-<mac>`` where mac = first 128 bits of HMAC-SHA256(secret, purpose:payload)
in lowercase hex, so tokens survive case-folding MTAs and cannot be forged or moved to another
recipient without the secret.
"""

from __future__ import annotations

import base64
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


# -- click tokens that carry their target -------------------------------------------------------
# ``RID-IDX-MAC/B64URL``: the URL travels in the link itself, MAC'd together with the recipient and
# link index, so the redirect needs no database read and still goes only where mailtrack sent it.

_MAX_URL = 8192


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def click_url_token(secret: str, recipient_id: str, link_index: int, url: str) -> str:
    payload = f"{recipient_id}-{link_index}"
    return f"{payload}-{_mac(secret, 'clicku', payload + chr(10) + url)}/{_b64(url.encode('utf-8'))}"


def parse_click_url(secret: str, token: str) -> tuple[str, int, str] | None:
    """(recipient id, link index, target URL) of a genuine URL-carrying click token, else None."""
    head, sep, enc = token.partition("/")
    if not sep or len(enc) > _MAX_URL * 4 // 3 + 4 or len(head) > 128:
        return None
    payload, _, mac = head.lower().rpartition("-")
    if len(mac) != _MAC_HEX or "-" not in payload or not _PAYLOAD.fullmatch(payload):
        return None
    try:
        url = base64.urlsafe_b64decode(enc + "=" * (-len(enc) % 4)).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if not hmac.compare_digest(mac, _mac(secret, "clicku", payload + chr(10) + url)):
        return None
    rid, _, idx = payload.partition("-")
    return rid, int(idx), url


# --- ids in the headers of what we send: a report that quotes them proves which recipient it is about

_MESSAGE_ID = re.compile(r"<([0-9a-z]{1,64})\.([0-9a-z]{1,64})\.([0-9a-f]{32})@([^<>\s]{1,255})>")


def message_id(secret: str, recipient_id: str, email_id: str, bounce_domain: str) -> str:
    """``<RID.EMAILID.MAC@bounce-domain>``: only mailtrack can make one that names a given recipient."""
    payload = f"{recipient_id}.{email_id}"
    return f"<{payload}.{_mac(secret, 'msgid', payload)}@{bounce_domain}>"


def parse_message_id(secret: str, value: str, bounce_domain: str) -> tuple[str, str] | None:
    """(recipient id, email id) from a genuine Message-ID of ours (any case), else None."""
    found = _MESSAGE_ID.fullmatch(value.strip().lower()) if len(value) <= 400 else None
    if found is None or found.group(4).rstrip(".") != bounce_domain.lower().rstrip("."):
        return None
    rid, eid, mac = found.group(1), found.group(2), found.group(3)
    if not hmac.compare_digest(mac, _mac(secret, "msgid", f"{rid}.{eid}")):
        return None
    return rid, eid


def mailtrack_id(secret: str, recipient_id: str) -> str:
    """The ``X-Mailtrack-ID`` header value: ``RID-MAC``."""
    return sign(secret, "mtid", recipient_id)


def recipient_from_mailtrack_id(secret: str, value: str) -> str | None:
    """Recipient id from a genuine ``X-Mailtrack-ID`` value, else None (a bare recipient id is not proof)."""
    return verify(secret, "mtid", value.strip().strip("<>"))


def unsubscribe_token(secret: str, recipient_id: str) -> str:
    return sign(secret, "unsubscribe", recipient_id)


def parse_unsubscribe(secret: str, token: str) -> str | None:
    """Recipient id of a genuine one-click unsubscribe token (URL or mailto local part), else None."""
    return verify(secret, "unsubscribe", token)
