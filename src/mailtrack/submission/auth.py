"""AUTH for submission: user name = account name, password = one of its API keys; failures slowed, then refused."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from ..store import accounts
from ..store.db import Store


def account_for(store: Store, name: str, key: str) -> int | None:
    """The account id when ``key`` is an API key of the account called ``name``, else None."""
    with store.read() as conn:
        found = accounts.account_for_key(conn, key)
        if found is None or accounts.get_account(conn, found)["name"] != name:
            return None
        return found


@dataclass
class FailureGuard:
    """Failed AUTHs per client IP: each one past ``slow_after`` waits longer; ``lock_after`` locks the IP out."""

    slow_after: int = 3
    lock_after: int = 10
    window: float = 600.0  # failures older than this are forgotten
    lockout: float = 600.0
    base_delay: float = 1.0
    max_delay: float = 8.0
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _locked: dict[str, float] = field(default_factory=dict)

    def locked(self, ip: str) -> bool:
        until = self._locked.get(ip)
        if until is None:
            return False
        if until > self.clock():
            return True
        del self._locked[ip]
        return False

    def failed(self, ip: str) -> tuple[float, bool]:
        """Record a failure: (seconds to wait before answering, whether the IP is now locked out)."""
        now = self.clock()
        seen = self._failures.setdefault(ip, deque())
        seen.append(now)
        while seen and seen[0] < now - self.window:
            seen.popleft()
        if len(self._failures) > 100_000:  # a scan from everywhere must not grow this without bound
            self._failures = {ip: seen}
        if len(seen) >= self.lock_after:
            self._locked[ip] = now + self.lockout
            del self._failures[ip]
            return 0.0, True
        over = len(seen) - self.slow_after
        return (min(self.base_delay * 2 ** (over - 1), self.max_delay) if over > 0 else 0.0), False

    def succeeded(self, ip: str) -> None:
        self._failures.pop(ip, None)
