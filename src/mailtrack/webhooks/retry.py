"""When to try a webhook delivery again: exponential backoff with jitter, for up to MAX_AGE."""

from __future__ import annotations

import random

DEFAULT_FIRST = 5.0
DEFAULT_CAP = 6 * 3600.0
JITTER = 0.2


def next_attempt(attempts: int, created_at: float, now: float, max_age: float,
                 schedule: tuple[float, ...] = (), rng: random.Random | None = None,
                 tried_at: float | None = None) -> float | None:
    """When failed attempt number ``attempts`` (1-based) is retried, or None once the delivery is too old.

    The last try is made at ``created_at + max_age`` exactly, so an endpoint that failed all along
    has then failed for ``max_age`` and is disabled. "Too old" is judged by when the failed attempt
    was made (``tried_at``, ``now`` by default), not by when its answer came: a try started just
    before the limit and answered (or timed out) after it still gets the last one.
    """
    if (now if tried_at is None else tried_at) - created_at >= max_age:
        return None
    n = max(attempts, 1)
    base = schedule[min(n, len(schedule)) - 1] if schedule else min(DEFAULT_FIRST * 2 ** min(n - 1, 32), DEFAULT_CAP)
    at = now + base * (1.0 + (rng or random).uniform(-JITTER, JITTER))
    return min(at, created_at + max_age)
