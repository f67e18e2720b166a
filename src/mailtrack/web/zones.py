"""The reader's time zone: every time on the pages is shown in it, with its label, and date filters mean
its days (a Brisbane user's "today" starts at midnight in Brisbane, not in London).

A zone chosen on the Settings page belongs to the user (every browser they sign in with, so a laptop
travelling keeps the office's zone). Until they choose, the browser's zone is used: app.js keeps it in
a cookie. Unknown names fall back to UTC.
"""

from __future__ import annotations

from contextvars import ContextVar
from datetime import UTC, datetime, tzinfo
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fastapi import Request

TZ_COOKIE = "mt_tz"
TZ_CHOSEN_COOKIE = "mt_tz_chosen"  # "1": chosen in Settings, app.js must not replace it with the browser's
CURRENT: ContextVar[tzinfo] = ContextVar("mailtrack_web_tz", default=UTC)


@lru_cache(maxsize=1)
def names() -> tuple[str, ...]:
    return tuple(sorted(z for z in available_timezones() if "/" in z and not z.startswith(("Etc/", "SystemV/"))))


@lru_cache(maxsize=256)
def zone(name: str | None) -> tzinfo:
    """The zone called ``name``; UTC when it is empty or unknown."""
    if not name or name == "UTC" or len(name) > 64:
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return UTC


def of(request: Request) -> tzinfo:
    """The signed-in user's chosen zone, else this browser's."""
    user = getattr(request.state, "web_user", None)
    chosen = getattr(user, "time_zone", None)
    return zone(chosen or request.cookies.get(TZ_COOKIE))


def name_of(tz: tzinfo) -> str:
    return getattr(tz, "key", None) or "UTC"


def when(iso_text: str | None, tz: tzinfo | None = None) -> str:
    """'2024-05-01T14:03:22.123Z' → '2024-05-02 00:03:22 AEST' in the reader's zone."""
    if not iso_text:
        return ""
    try:
        t = datetime.fromisoformat(iso_text.replace("Z", "+00:00"))
    except ValueError:
        return iso_text
    local = t.astimezone(tz or CURRENT.get())
    return f"{local:%Y-%m-%d %H:%M:%S} {local.tzname() or 'UTC'}"


def day_start(value: str, label: str, tz: tzinfo) -> float:
    """Midnight of a 'YYYY-MM-DD' day in ``tz``, as epoch seconds; ValueError in the label's words."""
    try:
        d = datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{label} must be a date like 2024-05-31, got {value!r}") from None
    return d.replace(tzinfo=tz).timestamp()
