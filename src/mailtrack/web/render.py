"""Templates (autoescaped: subjects, addresses, bounce texts and User-Agents come from strangers),
the status/symbol vocabulary for the pages, and the security headers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup, escape

from ..domain.status import DESCRIPTIONS, LABELS, Status
from . import explain, symbols, zones
from .auth import CSRF_FIELD, csrf_token

HERE = Path(__file__).resolve().parent

SOURCE_TYPES = {"task_sheet": "Task sheet", "invoice": "Invoice", "purchase_order": "Purchase order",
                "event_message": "Event message"}
EVENT_LABELS = {**LABELS, "opened": "Opened", "clicked": "Link clicked", "complained": "Marked as spam",
                "auto_reply": "Auto-reply", "delay_notice": "Delay notice"}
STATUS_ORDER = [s.value for s in Status]

# 16×16 stroke icons; constant markup, never built from data.
_ICONS: dict[str, str] = {
    "spooling": '<circle cx="8" cy="8" r="6.2"/><path d="M8 4.5V8l2.5 1.8"/>',
    "sent": '<path d="M2.8 8.6l3.4 3.4 7-7.4"/>',
    "opened": '<path d="M1.2 8S3.8 3.2 8 3.2 14.8 8 14.8 8 12.2 12.8 8 12.8 1.2 8 1.2 8z"/>'
              '<circle cx="8" cy="8" r="2.1"/>',
    "clicked": '<path d="M4 2.2l8.6 5.6-3.9 1 2.3 4.1-1.8 1-2.3-4.1-2.9 2.8z"/>',
    "soft_bounce": '<path d="M6 2.8L2.4 6.4 6 10"/><path d="M2.6 6.4h7.2a3.6 3.6 0 010 7.2H7.4"/>',
    "hard_bounce": '<circle cx="8" cy="8" r="6.2"/><path d="M5.4 5.4l5.2 5.2M10.6 5.4l-5.2 5.2"/>',
    "rejected": '<path d="M8 1.6l5.6 2.2v3.6c0 3.4-2.4 6-5.6 7-3.2-1-5.6-3.6-5.6-7V3.8z"/><path d="M5.2 8h5.6"/>',
    "spam": '<path d="M3.4 14.6V1.8"/><path d="M3.4 2.4h9.4l-2.2 3.2 2.2 3.2H3.4"/>',
}


@lru_cache(maxsize=16)
def icon(name: str) -> Markup:
    return Markup(  # noqa: S704 - constant icon markup from _ICONS only
        f'<svg class="ic" viewBox="0 0 16 16" aria-hidden="true" focusable="false">{_ICONS[name]}</svg>'
    )


# Fragments used many times per page are built here rather than in Jinja macros: a 50-row list
# calls them ~1,000 times, and a macro call costs ten times a function call.
# Every value below goes through escape(); the constant markup around it is ours.

@lru_cache(maxsize=64)
def badge(status: str) -> Markup:
    label = LABELS.get(status) or EVENT_LABELS.get(status, status)
    return Markup(  # noqa: S704
        f'<span class="badge b-{escape(status)}" title="{escape(DESCRIPTIONS.get(status, ""))}">{escape(label)}</span>')


def sym(name: str, tooltip: str) -> Markup:
    n, t = escape(name), escape(tooltip)
    return Markup(  # noqa: S704
        f'<span class="sym s-{n}" role="img" title="{t}" aria-label="{t}" data-symbol="{n}">{icon(name)}</span>')


def _group(inner: str, tips: list[str]) -> Markup:
    """A row of symbols: one keyboard/touch stop whose tooltip (app.js) lists every symbol's meaning."""
    if not inner:
        return Markup('<span class="syms"></span>')
    tip = escape("\n".join(tips))
    return Markup(f'<span class="syms" tabindex="0" data-tip="{tip}">{inner}</span>')  # noqa: S704


def email_syms(rcpts: list[dict[str, Any]]) -> Markup:
    found = symbols.email_symbols(rcpts)
    return _group("".join(sym(s.name, s.tooltip) for s in found), [s.tooltip for s in found])


@lru_cache(maxsize=128)
def _rcpt_syms(names: tuple[str, ...]) -> Markup:
    tips = [f"{symbols.TITLES[s]}: {symbols.MEANINGS[s]}" for s in names]
    return _group("".join(sym(s, t) for s, t in zip(names, tips, strict=True)), tips)


def rcpt_syms(r: dict[str, Any]) -> Markup:
    """A recipient's engagement symbols; its status is already on its badge."""
    return _rcpt_syms(tuple(s for s in symbols.recipient_symbols(r) if s not in symbols.STATUS_SYMBOLS))


def reason_badge(r: dict[str, Any]) -> Markup:
    """A status badge whose tooltip says the recipient's reason in plain words."""
    words = explain.summary(r)
    label = LABELS.get(r["status"], r["status"])
    desc = DESCRIPTIONS.get(r["status"], "")
    tip = f"{label}: {words}. {desc}" if words else desc
    return Markup(  # noqa: S704
        f'<span class="badge b-{escape(r["status"])}" title="{escape(tip)}">{escape(label)}</span>')


def source(src: dict[str, Any]) -> Markup:
    parts: list[str] = []
    if src.get("type"):
        parts.append(f'<span class="src">{escape(SOURCE_TYPES.get(src["type"], src["type"]))}</span>')
    if src.get("reference"):
        ref = src["reference"]
        parts.append(f'<a class="ref" href="/tasks/{escape(quote(ref, safe=""))}">{escape(ref)}</a>')
    if src.get("event"):
        parts.append(f'<span class="event">{escape(src["event"].replace("_", " "))}</span>')
    return Markup(" ".join(parts))  # noqa: S704


def time_tag(iso_text: str | None) -> Markup:
    return Markup(f'<time datetime="{escape(iso_text or "")}">{escape(when(iso_text))}</time>')  # noqa: S704


def when(iso_text: str | None) -> str:
    """A time in the reader's zone, with the zone's label: '2024-05-02 00:03:22 AEST'."""
    return zones.when(iso_text)


def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"], default=True),
        auto_reload=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        LABELS=LABELS, DESCRIPTIONS=DESCRIPTIONS, STATUS_ORDER=STATUS_ORDER, SOURCE_TYPES=SOURCE_TYPES,
        EVENT_LABELS=EVENT_LABELS, SYMBOL_TITLES=symbols.TITLES, SYMBOL_MEANINGS=symbols.MEANINGS,
        SYMBOL_ORDER=symbols.ORDER, icon=icon, CSRF_FIELD=CSRF_FIELD,
        badge=badge, reason_badge=reason_badge, explain=explain.explain,
        sym=sym, email_syms=email_syms, rcpt_syms=rcpt_syms, time=time_tag, source=source,
    )
    env.filters["when"] = when
    return env


ENV = _env()


def page(request: Request, name: str, status_code: int = 200, **ctx: Any) -> HTMLResponse:
    user = getattr(request.state, "web_user", None)
    if user is not None:
        ctx.setdefault("csrf", csrf_token(request.app.state.web_secret, user.nonce))
    tz = zones.of(request)
    token = zones.CURRENT.set(tz)
    try:
        html = ENV.get_template(name).render(request=request, user=user, path=request.url.path,
                                             tz_name=zones.name_of(tz), **ctx)
    finally:
        zones.CURRENT.reset(token)
    return HTMLResponse(html, status_code=status_code)


# --- security headers ------------------------------------------------------------------------

WEB_PREFIXES = ("/login", "/logout", "/emails", "/tasks", "/embed", "/settings", "/suppressions", "/static",
                "/sending-domains", "/webhooks", "/dashboard", "/live")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
ASGIApp = Callable[[Scope, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]], Awaitable[None]]


def is_web_path(path: str) -> bool:
    return path == "/" or any(path == p or path.startswith(p + "/") or path.startswith(p + ".")
                              for p in WEB_PREFIXES)


class SecurityHeaders:
    """Pure ASGI middleware: CSP and friends on every web page (not on the JSON API or /docs)."""

    def __init__(self, app: ASGIApp, frame_ancestors: str) -> None:
        self.app = app
        self.embed_csp = f"default-src 'self'; frame-ancestors {frame_ancestors}".encode()

    async def __call__(self, scope: Scope, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] != "http" or not is_web_path(scope["path"]):
            await self.app(scope, receive, send)
            return
        embed = scope["path"].startswith("/embed/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", [])
                           if k.lower() not in (b"content-security-policy", b"x-frame-options")]
                headers.append((b"content-security-policy", self.embed_csp if embed else b"default-src 'self'"))
                if not embed:
                    headers.append((b"x-frame-options", b"DENY"))
                headers += [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer")]
                if not scope["path"].startswith("/static/"):
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)
