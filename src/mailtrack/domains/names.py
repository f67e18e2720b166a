"""Domain names as users type them → the lower-case A-label form stored and published."""

from __future__ import annotations

import re
from functools import lru_cache

from ..errors import InputError

_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")


def normalize(text: str, *, field: str = "domain") -> str:
    """``Acme.Example.`` → ``acme.example``; anything that is not a registrable host name is a 422 naming it."""
    raw = (text or "").strip().rstrip(".")
    try:
        name = raw.encode("idna").decode("ascii").lower() if not raw.isascii() else raw.lower()
    except UnicodeError:
        name = ""
    labels = name.split(".")
    if (not name or len(name) > 253 or len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels)
            or labels[-1].isdigit()):
        raise InputError(f"{text!r} is not a domain name (expected e.g. acme.example)", field=field)
    return name


@lru_cache(maxsize=4096)  # parsing costs ~20 µs and a sender uses few From addresses
def from_domain(address: str) -> str | None:
    """The domain of a From header value (``Name <user@Domain>``), lower-case, or None."""
    from email.utils import parseaddr

    _, addr = parseaddr(address)
    _, at, domain = addr.rpartition("@")
    return domain.strip().rstrip(".").lower() or None if at else None
