"""Per-provider delivery limits (connections, messages per second): the data and its setting's syntax. Pure.

See ``delivery/throttle.py`` for how they are applied; the groups are named there.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limit:
    connections: int
    rate: float  # messages per second; 0 = unlimited


DEFAULT_LIMITS: dict[str, Limit] = {
    "google": Limit(10, 20), "microsoft": Limit(5, 10), "yahoo": Limit(5, 5), "apple": Limit(5, 5),
}


def parse_limits(text: str) -> dict[str, Limit]:
    """'google=10/20, microsoft=5/10' → {group: Limit}; the defaults for groups not named."""
    out = dict(DEFAULT_LIMITS)
    for part in filter(None, (p.strip() for p in text.split(","))):
        name, sep, spec = part.partition("=")
        conns, slash, rate = spec.partition("/")
        try:
            if not sep or not slash:
                raise ValueError
            out[name.strip().lower()] = Limit(int(conns), float(rate))
        except ValueError:
            raise ValueError(f"throttle entry {part!r} is not GROUP=CONNECTIONS/RATE (e.g. google=10/20)") from None
        if out[name.strip().lower()].connections < 1 or out[name.strip().lower()].rate < 0:
            raise ValueError(f"throttle entry {part!r}: at least 1 connection and a rate ≥ 0")
    return out
