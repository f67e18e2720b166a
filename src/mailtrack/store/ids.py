"""Identifiers: time-ordered, unguessable, lowercase hex (safe in VERP local parts)."""

from __future__ import annotations

import secrets
import time


def new_id() -> str:
    """13 hex digits of microseconds since the epoch + 40 random bits: 23 characters."""
    return f"{time.time_ns() // 1000:013x}{secrets.token_hex(5)}"


def now() -> float:
    return time.time()
