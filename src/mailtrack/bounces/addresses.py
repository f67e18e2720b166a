"""Finding e-mail addresses in free text without regex backtracking."""

from __future__ import annotations

_LOCAL_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.!#$%&'*+-/=?^_`{|}~")
_DOMAIN_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_")
_MAX_LOCAL = 64
_MAX_DOMAIN = 255

# Addresses of the reporting side, never a failed recipient.
_SYSTEM_LOCALS = frozenset({"mailer-daemon", "postmaster", "mail-daemon", "maildaemon", "mailerdaemon"})


def find_addresses(text: str, limit: int = 50, max_at: int = 500) -> list[str]:
    """Addresses in order of appearance (duplicates kept once), scanning around each '@' (at most max_at)."""
    found: list[str] = []
    seen: set[str] = set()
    at = text.find("@")
    for _ in range(max_at):
        if at == -1 or len(found) >= limit:
            break
        address, end = _address_at(text, at)
        if address and address.lower() not in seen:
            seen.add(address.lower())
            found.append(address)
        at = text.find("@", max(end, at + 1))
    return found


def _quoted_start(text: str, at: int) -> int:
    """Start of a quoted local part ending just before '@' ("john..doe."@x), -1 when there is none."""
    if at < 3 or text[at - 1] != '"':
        return -1
    opening = text.rfind('"', max(0, at - _MAX_LOCAL - 1), at - 1)
    if opening == -1 or any(c in text[opening:at] for c in "\n\r<>\\"):
        return -1
    return opening


def _address_at(text: str, at: int) -> tuple[str | None, int]:
    quoted = _quoted_start(text, at)
    start = at
    while start > 0 and at - start < _MAX_LOCAL and text[start - 1] in _LOCAL_CHARS:
        start -= 1
    end = at + 1
    while end < len(text) and end - at <= _MAX_DOMAIN and text[end] in _DOMAIN_CHARS:
        end += 1
    # a quoted local part is kept exactly as written: dots, spaces and all
    local = text[quoted:at] if quoted != -1 else text[start:at].strip(".'`{|}~")
    if local[:5].lower() == "smtp=":  # X.400 style "dda:SMTP=user@host"
        local = local[5:]
    domain = text[at + 1 : end].rstrip(".-_")
    if not local or ("." not in domain and domain.lower() != "localhost"):
        return None, end
    if domain.startswith((".", "-")) or ".." in domain:
        return None, end
    return f"{local}@{domain}", end


def clean_address(value: str | None) -> str | None:
    """The bare address of a header or DSN field value ("rfc822; <a@b>" → "a@b"), None if it has none."""
    if not value:
        return None
    text = value.strip()
    if ";" in text:
        addr_type, _, rest = text.partition(";")
        if "@" not in addr_type:
            text = rest.strip()
    found = find_addresses(text, limit=1)
    return found[0] if found else None


def is_system_address(address: str) -> bool:
    """True for mailer-daemon, postmaster and similar reporting-side mailboxes."""
    return address.split("@", 1)[0].lower() in _SYSTEM_LOCALS
