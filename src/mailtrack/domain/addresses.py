"""Address and header validation. Rejects anything that could smuggle a header or SMTP command."""

from __future__ import annotations

import re
from email.utils import formataddr, getaddresses

# C0 controls and DEL, TAB excepted: CR/LF/NUL smuggle headers, VT/FF/ESC… go out raw and confuse clients
_FORBIDDEN = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_LOCAL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}$")
_LABEL = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)$")
_BARE = re.compile(r"[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9.-]{1,253}")

SAFE_HEADERS = frozenset(
    {"x-priority", "importance", "list-unsubscribe", "list-unsubscribe-post", "in-reply-to", "references",
     "keywords", "comments", "organization", "x-entity-ref-id", "auto-submitted"}
)
"""Extra headers a caller may set (``X-*`` headers are allowed too, except X-Mailtrack-*)."""


class AddressError(ValueError):
    pass


def check_header_value(value: str, what: str) -> str:
    bad = _FORBIDDEN.search(value)
    if bad:
        raise AddressError(f"{what} must not contain control characters (found U+{ord(bad.group()):04X} at "
                           f"position {bad.start()}; only TAB is allowed)")
    if len(value) > 998:
        raise AddressError(f"{what} is longer than 998 characters")
    return value


def parse_address(text: str, what: str = "address") -> tuple[str, str]:
    """'Name <a@b.c>' or 'a@b.c' → (display name, normalised address). Raises AddressError."""
    check_header_value(text, what)
    if _BARE.fullmatch(text.strip()):  # the common case, without the (slow) RFC 5322 parser
        name, addr = "", text.strip()
    else:
        found = getaddresses([text.strip()])
        if len(found) != 1 or text.count("@") != found[0][1].count("@") + found[0][0].count("@"):
            raise AddressError(f"{what} {text!r} must be exactly one email address")
        name, addr = found[0]
    if not addr or "@" not in addr:
        raise AddressError(f"{what} {text!r} is not an email address")
    local, _, domain = addr.rpartition("@")
    if not _LOCAL.fullmatch(local) or local.startswith(".") or local.endswith(".") or ".." in local:
        raise AddressError(f"{what} {text!r} has an invalid local part")
    try:
        # an ASCII domain is its own IDNA form (the codec only checks label lengths, as _LABEL does below)
        ascii_domain = (domain if domain.isascii() else domain.encode("idna").decode("ascii")).lower()
    except UnicodeError as e:
        raise AddressError(f"{what} {text!r} has an invalid domain") from e
    labels = ascii_domain.split(".")
    if len(labels) < 2 or len(ascii_domain) > 253 or not all(_LABEL.fullmatch(lb) for lb in labels):
        raise AddressError(f"{what} {text!r} has an invalid domain")
    return name, f"{local}@{ascii_domain}"


def format_address(name: str, addr: str) -> str:
    return formataddr((name, addr)) if name else addr


def check_extra_header(name: str, value: str) -> None:
    if not re.fullmatch(r"[A-Za-z0-9-]{1,76}", name):
        raise AddressError(f"header name {name!r} is not a valid header name")
    low = name.lower()
    if low.startswith("x-mailtrack") or not (low.startswith("x-") or low in SAFE_HEADERS):
        raise AddressError(
            f"header {name!r} cannot be set; allowed: X-* headers and {', '.join(sorted(SAFE_HEADERS))}"
        )
    check_header_value(value, f"header {name}")
