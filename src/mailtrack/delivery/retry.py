"""When to try a deferred recipient again, and when to stop trying."""

from __future__ import annotations

import random

DEFAULT_FIRST = 300.0  # 5 minutes
DEFAULT_CAP = 3600.0  # 1 hour
JITTER = 0.10


def base_delay(attempt: int, schedule: tuple[float, ...] = ()) -> float:
    """Delay after failed attempt number ``attempt`` (1-based), before jitter.

    The default doubles from 5 minutes up to 1 hour; a configured schedule is used step by step,
    its last step repeating.
    """
    n = max(attempt, 1)
    if schedule:
        return schedule[min(n, len(schedule)) - 1]
    # cap the exponent too, so a very old recipient cannot overflow the float
    return min(DEFAULT_FIRST * 2 ** min(n - 1, 32), DEFAULT_CAP)


def next_delay(attempt: int, schedule: tuple[float, ...] = (), rng: random.Random | None = None) -> float:
    """Delay with ±10% jitter, so recipients deferred together do not all come back together."""
    r = (rng or random).uniform(-JITTER, JITTER)
    return base_delay(attempt, schedule) * (1.0 + r)


def gave_up(first_attempt_at: float | None, now: float, max_age: float) -> bool:
    """True when a recipient has been trying for longer than ``max_age`` seconds."""
    return first_attempt_at is not None and now - first_attempt_at >= max_age
