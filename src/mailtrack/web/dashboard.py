"""The dashboard: the last 24 hours (hourly) or 30 days (daily) of delivery, complaints and engagement,
as SVG charts drawn here (no script, no CDN) and as tables with the same numbers."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from markupsafe import Markup, escape

from ..store import web as web_q
from ..store.db import Store
from . import zones
from .auth import WebUser
from .deps import current_user, web_store
from .render import SOURCE_TYPES, page

router = APIRouter(include_in_schema=False)
GMAIL_COMPLAINT_LIMIT = 0.3  # per cent: above it Gmail rejects or junks a bulk sender's mail
RANGES = {"24h": ("Last 24 hours", 3600.0, 24), "30d": ("Last 30 days", 86400.0, 30)}
W, H, PAD_L, PAD_B, PAD_T = 640, 200, 52, 24, 10


@dataclass(frozen=True)
class Series:
    label: str
    values: list[float]
    css: str  # colour and dash pattern class: series are told apart by more than colour


def _ticks(top: float) -> list[float]:
    """0 and up to four round steps (1, 2 or 5 × a power of ten) covering ``top``."""
    if top <= 0:
        return [0.0, 1.0]
    raw = top / 4
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    return [round(step * i, 6) for i in range(math.ceil(top / step) + 1)]


def chart(title: str, series: list[Series], labels: list[str], *, unit: str = "",
          threshold: tuple[float, str] | None = None) -> Markup:
    """A line chart as inline SVG; every text goes through escape()."""
    n = len(labels)
    top = max([max(s.values, default=0) for s in series] + [threshold[0] * 1.2 if threshold else 0, 1])
    ticks = _ticks(top)
    top = ticks[-1] or 1

    def x(i: int) -> float:
        return PAD_L + (W - PAD_L - 8) * (i / max(n - 1, 1))

    def y(v: float) -> float:
        return PAD_T + (H - PAD_T - PAD_B) * (1 - v / top)

    parts = [f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}">']
    for t in ticks:
        parts.append(f'<line class="grid" x1="{PAD_L}" x2="{W - 8}" y1="{y(t):.1f}" y2="{y(t):.1f}"/>'
                     f'<text class="tick" x="{PAD_L - 6}" y="{y(t) + 4:.1f}" text-anchor="end">'
                     f'{t:g}{escape(unit)}</text>')
    step = max(1, n // 6)
    for i in range(0, n, step):
        parts.append(f'<text class="tick" x="{x(i):.1f}" y="{H - 6}" text-anchor="middle">{escape(labels[i])}</text>')
    if threshold:
        ty = y(threshold[0])
        parts.append(f'<line class="limit" x1="{PAD_L}" x2="{W - 8}" y1="{ty:.1f}" y2="{ty:.1f}"/>'
                     f'<text class="limit-label" x="{W - 10}" y="{ty - 4:.1f}" text-anchor="end">'
                     f'{escape(threshold[1])}</text>')
    for s in series:
        pts = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(s.values))
        parts.append(f'<polyline class="line {escape(s.css)}" points="{pts}"/>')
    parts.append("</svg>")
    legend = "".join(f'<li><span class="key {escape(s.css)}" aria-hidden="true"></span>{escape(s.label)}</li>'
                     for s in series)
    return Markup(f'<figure class="chart-box"><figcaption>{escape(title)}</figcaption>{"".join(parts)}'  # noqa: S704
                  f'<ul class="chart-legend">{legend}</ul></figure>')


def _labels(start: float, size: float, n: int, hourly: bool) -> list[str]:
    tz = zones.CURRENT.get()
    fmt = "%H:00" if hourly else "%d %b"
    return [datetime.fromtimestamp(start + size * i, tz).strftime(fmt) for i in range(n)]


def _start(now: float, size: float, n: int, hourly: bool, request: Request) -> float:
    tz = zones.of(request)
    local = datetime.fromtimestamp(now, tz)
    if hourly:
        first = local.replace(minute=0, second=0, microsecond=0) - timedelta(hours=n - 1)
    else:
        first = local.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=n - 1)
    return first.timestamp()


@router.get("/dashboard", response_model=None)
def dashboard(request: Request, user: WebUser = Depends(current_user), store: Store = Depends(web_store)) -> Response:
    rng = request.query_params.get("range", "24h")
    st = request.query_params.get("source_type", "")
    errors = []
    if rng not in RANGES:
        errors.append(f"Range must be 24h or 30d, got {rng[:20]!r}")
        rng = "24h"
    if st and st not in SOURCE_TYPES:
        errors.append(f"unknown source type {st[:40]!r}")
        st = ""
    title, size, n = RANGES[rng]
    hourly = rng == "24h"
    start = _start(time.time(), size, n, hourly, request)
    with store.read() as conn:
        b = web_q.event_buckets(conn, user.account_id, start, size, n, st or None)
    token = zones.CURRENT.set(zones.of(request))
    try:
        labels = _labels(start, size, n, hourly)
    finally:
        zones.CURRENT.reset(token)
    rate = [round(100 * c / s, 2) if s else 0.0 for c, s in zip(b["complained"], b["sent"], strict=True)]
    bounced = [s + h for s, h in zip(b["soft_bounce"], b["hard_bounce"], strict=True)]
    charts = [
        chart("Delivery", [Series("Submitted", [float(v) for v in b["creating"]], "c-sub"),
                           Series("Sent (accepted)", [float(v) for v in b["sent"]], "c-sent"),
                           Series("Deferred", [float(v) for v in b["deferred"]], "c-def"),
                           Series("Bounced (soft + hard)", [float(v) for v in bounced], "c-bounce")], labels),
        chart("Complaint rate (marked as spam per sent)", [Series("Complaint rate", rate, "c-spam")], labels,
              unit="%", threshold=(GMAIL_COMPLAINT_LIMIT, "0.3%: Gmail's limit")),
        chart("Opens and clicks", [
            Series("Opens by people", [float(v) for v in b["opened_human"]], "c-open"),
            Series("Opens by machines", [float(o - h) for o, h in zip(b["opened"], b["opened_human"], strict=True)],
                   "c-open-m"),
            Series("Clicks by people", [float(v) for v in b["clicked_human"]], "c-click"),
            Series("Clicks by machines", [float(o - h) for o, h in zip(b["clicked"], b["clicked_human"], strict=True)],
                   "c-click-m")], labels),
    ]
    keys = {"submitted": "creating", "sent": "sent", "deferred": "deferred", "soft": "soft_bounce",
            "hard": "hard_bounce", "rejected": "rejected", "complained": "complained", "opened": "opened",
            "opened_human": "opened_human", "clicked": "clicked", "clicked_human": "clicked_human"}
    rows: list[dict[str, Any]] = [{"label": labels[i], "rate": rate[i], **{k: b[v][i] for k, v in keys.items()}}
                                  for i in range(n)]
    totals = {k: sum(r[k] for r in rows) for k in rows[0] if k not in ("label", "rate")}
    total_rate = round(100 * totals["complained"] / totals["sent"], 2) if totals["sent"] else 0.0
    return page(request, "dashboard.html", status_code=400 if errors else 200, errors=errors, rng=rng, ranges=RANGES,
                range_title=title, source_type=st, charts=charts, rows=rows, totals=totals, total_rate=total_rate,
                limit=GMAIL_COMPLAINT_LIMIT)
