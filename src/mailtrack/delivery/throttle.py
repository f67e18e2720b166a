"""Provider-aware throttling: destinations grouped by MX, limits per group, a pause on rate-limit replies.

    group       MX hosts (the route's first host) ending in              connections  messages/s
    google      .google.com .googlemail.com                                        10          20
    microsoft   .outlook.com .hotmail.com                                           5          10
    yahoo       .yahoodns.net .yahoo.com .aol.com                                   5           5
    apple       .icloud.com .me.com .mac.com .apple.com                             5           5
    HOST        anything else, by its first MX host (or transport-map host)   per host   unlimited

Override with ``MAILTRACK_THROTTLE="google=10/20, microsoft=5/10"`` (connections/messages per second).

A ``421``/``451`` rate-limit reply ("unusual rate", "rate limited", 4.7.28, Yahoo's TSS04, "server
busy", or a 421 4.7.x "try again later") pauses the whole group — not just that recipient — for
``MAILTRACK_THROTTLE_PAUSE``, doubling with each repeat up to an hour. Recipients that come up while
it is paused are deferred to its end without counting an attempt. After a pause the group resumes at
an eighth of its rate (2 msg/s for unlimited groups) and doubles every RAMP seconds without another
limit reply. A plain "451 4.7.1 <address>: try again later" is about that address (greylisting):
it defers only that recipient.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from ..domain.providers import DEFAULT_LIMITS, Limit, parse_limits
from ..domain.reasons import find_enhanced

__all__ = ["DEFAULT_LIMITS", "Limit", "parse_limits"]  # the limits are declared in domain/providers.py

PROVIDERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("google", (".google.com", ".googlemail.com")),
    ("microsoft", (".outlook.com", ".hotmail.com")),
    ("yahoo", (".yahoodns.net", ".yahoo.com", ".aol.com")),
    ("apple", (".icloud.com", ".me.com", ".mac.com", ".apple.com")),
)


MAX_PAUSE = 3600.0
RAMP = 30.0  # seconds between rate doublings after a pause
RAMP_STEPS = 3  # 1/8 → 1/4 → 1/2 → full
UNLIMITED_START = 2.0

_RATE_WORDS = re.compile(r"unusual rate|rate.?limit|too many|unexpected volume|\btss0\d|4\.7\.28|server busy|"
                         r"throttl|temporarily deferred due to", re.IGNORECASE)


def group_of(host: str) -> str:
    """The provider group of an MX host; other hosts are their own group."""
    h = host.lower().rstrip(".")
    for name, suffixes in PROVIDERS:
        if any(h.endswith(s) or h == s[1:] for s in suffixes):
            return name
    return h


def is_rate_limit(code: int | None, text: str) -> bool:
    """A provider-wide "slow down", as opposed to a refusal of one address."""
    if code not in (421, 451):
        return False
    if _RATE_WORDS.search(text):
        return True
    enhanced = find_enhanced(text) or ""
    return code == 421 and enhanced.startswith("4.7.") and "try again later" in text.lower()


@dataclass
class _Group:
    limit: Limit
    paused_until: float = 0.0  # wall clock
    pauses: int = 0  # consecutive pauses, for the doubling
    reason: str = ""
    ramp_from: float = 0.0  # wall clock when the last pause ended
    next_slot: float = 0.0  # monotonic: the pacing of this group's messages
    sem: asyncio.Semaphore | None = field(default=None, repr=False)

    def rate(self, now: float) -> float:
        """Messages per second allowed now (0 = unlimited), ramping up after a pause."""
        if self.pauses == 0 or not self.ramp_from:
            return self.limit.rate
        step = int((now - self.ramp_from) // RAMP)
        if step >= RAMP_STEPS:
            self.pauses = 0  # fully resumed; the next limit reply starts the doubling afresh
            return self.limit.rate
        base = self.limit.rate or UNLIMITED_START * 2 ** RAMP_STEPS
        return base / 2 ** (RAMP_STEPS - step)


@dataclass(frozen=True)
class Pause:
    group: str
    until: float
    reason: str


class Throttle:
    """Per-group connection caps, pacing and pauses (used on the event loop only)."""

    def __init__(self, limits: dict[str, Limit] | None = None, *, default_connections: int = 10,
                 pause: float = 60.0) -> None:
        self.limits = limits if limits is not None else dict(DEFAULT_LIMITS)
        self.default = Limit(default_connections, 0.0)
        self.base_pause = pause
        self._groups: dict[str, _Group] = {}
        self.on_pause: list[Callable[[Pause], None]] = []  # e.g. record it in the store

    def _group(self, name: str) -> _Group:
        g = self._groups.get(name)
        if g is None:
            g = self._groups[name] = _Group(self.limits.get(name, self.default))
        return g

    def semaphore(self, name: str) -> asyncio.Semaphore:
        g = self._group(name)
        if g.sem is None:
            g.sem = asyncio.Semaphore(g.limit.connections)
        return g.sem

    def paused(self, name: str, now: float | None = None) -> Pause | None:
        g = self._groups.get(name)
        t = time.time() if now is None else now
        if g is None or g.paused_until <= t:
            return None
        return Pause(name, g.paused_until, g.reason)

    async def pace(self, name: str) -> None:
        """Wait for this group's next message slot."""
        g = self._group(name)
        rate = g.rate(time.time())
        if rate <= 0:
            return
        now = time.monotonic()
        slot = max(now, g.next_slot)
        g.next_slot = slot + 1.0 / rate
        if slot > now:
            await asyncio.sleep(slot - now)

    def observe(self, name: str, code: int | None, text: str, now: float | None = None) -> Pause | None:
        """Look at a reply; a rate-limit reply pauses the group (once per pause, however many arrive)."""
        if not is_rate_limit(code, text):
            return None
        t = time.time() if now is None else now
        g = self._group(name)
        if g.paused_until > t:
            return None
        g.pauses += 1
        length = min(self.base_pause * 2 ** (g.pauses - 1), MAX_PAUSE)
        g.paused_until = t + length
        g.ramp_from = g.paused_until
        g.reason = text[:300]
        pause = Pause(name, g.paused_until, g.reason)
        for cb in self.on_pause:
            cb(pause)
        return pause

    def snapshot(self, now: float | None = None) -> list[Pause]:
        t = time.time() if now is None else now
        return [Pause(n, g.paused_until, g.reason) for n, g in sorted(self._groups.items()) if g.paused_until > t]
