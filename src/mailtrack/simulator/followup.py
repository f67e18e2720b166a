"""After-delivery actions: send a report back by SMTP, or load the pixel / follow a link by HTTP."""

from __future__ import annotations

import asyncio
import logging
import urllib.request
from collections.abc import Callable
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from html.parser import HTMLParser
from http.client import HTTPResponse
from typing import cast
from urllib.parse import urlsplit

import aiosmtplib

from . import reports
from .behaviours import Behaviour
from .state import FollowupResult, SimulatorState

log = logging.getLogger(__name__)

# A human on a desktop: the tracking side must classify these hits as human.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
)
HTTP_TIMEOUT = 10.0
SMTP_TIMEOUT = 10.0
TRACKING_PATH_MARK = "/o/"

_IMAGE_ACCEPT = "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8"
_PAGE_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"

ReportBuilder = Callable[..., EmailMessage]
_REPORTS: dict[Behaviour, tuple[str, ReportBuilder]] = {
    Behaviour.LATE_BOUNCE: ("dsn", reports.build_dsn),
    Behaviour.COMPLAINT: ("arf", reports.build_arf),
    Behaviour.OOTO: ("auto_reply", reports.build_auto_reply),
}


class _FirstPixelAndLink(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.pixel: str | None = None
        self.link: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img" and self.pixel is None:
            src = (dict(attrs).get("src") or "").strip()
            if _is_http(src) and TRACKING_PATH_MARK in urlsplit(src).path:
                self.pixel = src
        elif tag == "a" and self.link is None:
            href = (dict(attrs).get("href") or "").strip()
            if _is_http(href):
                self.link = href


def find_pixel_and_link(html: str) -> tuple[str | None, str | None]:
    """The first tracking pixel (an ``<img>`` whose path has ``/o/``) and the first http(s) link."""
    finder = _FirstPixelAndLink()
    finder.feed(html)
    finder.close()
    return finder.pixel, finder.link


def html_of(content: bytes) -> str | None:
    """The text of the message's HTML part, if it has one."""
    message = cast(EmailMessage, BytesParser(policy=policy.default).parsebytes(content))
    body = message.get_body(preferencelist=("html",))
    return None if body is None else str(body.get_content())


class _NoRedirects(urllib.request.HTTPErrorProcessor):
    """Hand every response back as it is: a 302 from our click endpoint is the result, not a hop."""

    def http_response(self, request: urllib.request.Request, response: HTTPResponse) -> HTTPResponse:
        return response

    https_response = http_response


# No proxies: the tracking server is on loopback, whatever http_proxy says.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirects())


def http_get(url: str, accept: str = _PAGE_ACCEPT) -> int:
    """GET ``url`` like a desktop browser, without following redirects; return the status."""
    if not _is_http(url):
        raise ValueError(f"not an http(s) URL: {url!r}")
    headers = {"User-Agent": BROWSER_USER_AGENT, "Accept": accept, "Accept-Language": "en-US,en;q=0.9"}
    request = urllib.request.Request(url, headers=headers)  # noqa: S310 - scheme checked above
    with _OPENER.open(request, timeout=HTTP_TIMEOUT) as response:
        response.read(256 * 1024)
        return int(response.status)


class Followups:
    """Runs the after-delivery actions as background tasks; failures are logged and recorded."""

    def __init__(self, state: SimulatorState, domain: str, report_to: tuple[str, int] | None, delay: float) -> None:
        self.state = state
        self.domain = domain
        self.report_to = report_to
        self.delay = delay
        self._tasks: set[asyncio.Task[None]] = set()

    def schedule(self, behaviour: Behaviour, recipient: str, mail_from: str, content: bytes) -> None:
        task = asyncio.get_running_loop().create_task(self._run(behaviour, recipient, mail_from, content))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def pending(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout: float = 30.0) -> None:
        """Wait until every scheduled action has finished (including ones scheduled meanwhile)."""
        async with asyncio.timeout(timeout):
            while self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)

    async def cancel(self) -> None:
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _run(self, behaviour: Behaviour, recipient: str, mail_from: str, content: bytes) -> None:
        await asyncio.sleep(self.delay)
        if behaviour in _REPORTS:
            await self._report(behaviour, recipient, mail_from, content)
        else:
            await self._browse(behaviour, recipient, content)

    async def _report(self, behaviour: Behaviour, recipient: str, mail_from: str, content: bytes) -> None:
        action, build = _REPORTS[behaviour]
        if mail_from in ("", "<>"):
            # Never answer a bounce (RFC 3464 § 2 / RFC 3834 § 2): it has no one to go back to.
            self._record(behaviour, recipient, action, "<>", False, "null envelope sender: nothing sent")
            return
        if self.report_to is None:
            self._record(
                behaviour,
                recipient,
                action,
                mail_from,
                False,
                "no report_to set: run the simulator with --report-to HOST:PORT of the inbound server",
            )
            return
        host, port = self.report_to
        try:
            message = build(original=content, recipient=recipient, envelope_sender=mail_from, domain=self.domain)
            _errors, reply = await aiosmtplib.send(
                message,
                sender="",
                recipients=[mail_from],
                hostname=host,
                port=port,
                start_tls=False,
                timeout=SMTP_TIMEOUT,
                local_hostname=f"mx.{self.domain}",
            )
        except Exception as error:
            self._record(behaviour, recipient, action, mail_from, False, f"{type(error).__name__}: {error}")
            return
        self._record(behaviour, recipient, action, mail_from, True, reply)

    async def _browse(self, behaviour: Behaviour, recipient: str, content: bytes) -> None:
        try:
            html = html_of(content)
        except Exception as error:
            self._record(behaviour, recipient, str(behaviour), "", False, f"unreadable message: {error}")
            return
        pixel, link = find_pixel_and_link(html) if html else (None, None)
        # A reader who clicks has usually opened the message first.
        if pixel is not None:
            await self._get(behaviour, recipient, "open", pixel, _IMAGE_ACCEPT)
        elif behaviour is Behaviour.OPEN:
            self._record(behaviour, recipient, "open", "", False, "no tracking pixel in the HTML part")
        if behaviour is Behaviour.CLICK:
            if link is None:
                self._record(behaviour, recipient, "click", "", False, "no http(s) link in the HTML part")
            else:
                await self._get(behaviour, recipient, "click", link, _PAGE_ACCEPT)

    async def _get(self, behaviour: Behaviour, recipient: str, action: str, url: str, accept: str) -> None:
        try:
            status = await asyncio.to_thread(http_get, url, accept)
        except Exception as error:
            self._record(behaviour, recipient, action, url, False, f"{type(error).__name__}: {error}")
            return
        self._record(behaviour, recipient, action, url, status < 400, str(status))

    def _record(self, behaviour: Behaviour, recipient: str, action: str, target: str, ok: bool, detail: str) -> None:
        if ok:
            log.info("simulator %s for %s → %s: %s", action, recipient, target, detail)
        else:
            log.warning("simulator %s for %s → %s failed: %s", action, recipient, target, detail)
        self.state.followups.append(FollowupResult(behaviour, recipient, action, target, ok, detail))


def _is_http(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))
