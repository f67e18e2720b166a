"""Who fetched the pixel or followed the link: a person, or a machine acting for one. Pure.

Heuristics, in order (the first that matches wins):

Opens
  1. ``image_proxy`` — webmail image proxies that fetch on the reader's behalf, so the open is real
     but IP/UA say nothing about the reader: Gmail (``GoogleImageProxy``, ``via ggpht.com``),
     Yahoo (``YahooMailProxy``), Outlook.com / Office 365 (``OutlookImageProxy``, ``ms-office``
     image fetchers identified by ``Microsoft-Office-Image``).
  2. ``apple_privacy`` — Apple Mail Privacy Protection fetches every remote image when the message
     is delivered, whether or not it is read: its proxy sends the bare UA ``Mozilla/5.0``, or an
     Apple-Mail-style WebKit UA (no ``Safari`` token) from Apple's own 17.0.0.0/8 network.
  3. ``human`` — Outlook desktop (``Microsoft Office/… Microsoft Outlook``), before rule 4 matches it.
  4. ``scanner`` — a known security scanner or an HTTP library / headless browser UA.
  5. ``human`` — a browser or mail client UA (``Mozilla/…`` with a platform, Outlook, Thunderbird).
  6. ``unknown`` — anything else, including no UA at all.

Clicks
  1. ``scanner`` — a known scanner / library UA; or the click came within ``SCANNER_AFTER_SENT``
     seconds of the recipient's ``sent`` time (scanners follow links on arrival); or, together
     with the recipient's other recent clicks, every link of the message (at least two) or at
     least ``BURST_LINKS`` distinct links were followed within ``BURST_WINDOW`` seconds.
  2. ``human`` / ``unknown`` as for opens (a proxy UA on a click is unusual: ``unknown``).

Only ``human`` hits set first_opened_at / first_clicked_at. An earlier hit is not reclassified
when a later one reveals a burst; the burst rule marks the hits that complete it.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum


class HitClass(StrEnum):
    HUMAN = "human"
    APPLE_PRIVACY = "apple_privacy"
    IMAGE_PROXY = "image_proxy"
    SCANNER = "scanner"
    UNKNOWN = "unknown"


SCANNER_AFTER_SENT = 10.0
BURST_WINDOW = 5.0
BURST_LINKS = 3

_IMAGE_PROXIES = ("googleimageproxy", "ggpht.com", "yahoomailproxy", "outlookimageproxy",
                  "microsoft-office-image")
_SCANNERS = (
    "barracuda", "mimecast", "proofpoint", "safelinks", "safe links", "microsoft office",
    "symantec", "messagelabs", "broadcom", "fireeye", "trendmicro", "trend micro", "sophos",
    "forcepoint", "ironport", "cisco", "zscaler", "checkpoint", "check point", "fortinet",
    "fortiguard", "paloalto", "palo alto", "kaspersky", "bitdefender", "avanan", "abnormal",
    "vadesecure", "spamtitan", "hornetsecurity", "trustwave", "agari", "libraesva",
    # libraries, headless browsers and link unfurlers: not a person reading mail
    "headlesschrome", "phantomjs", "puppeteer", "playwright", "selenium", "curl/", "wget/",
    "python-requests", "python-urllib", "python-httpx", "aiohttp", "go-http-client", "java/",
    "apache-httpclient", "okhttp", "libwww-perl", "httpclient", "node-fetch", "axios/",
    "bot", "crawler", "spider", "scan", "facebookexternalhit", "slackbot", "preview",
)
_CLIENTS = ("windows", "macintosh", "mac os", "iphone", "ipad", "android", "linux", "cros ", "x11",
            "outlook", "thunderbird")
_APPLE_NET = ipaddress.ip_network("17.0.0.0/8")


@dataclass(frozen=True)
class ClickContext:
    """What the store knows about the clicked message when the click arrives."""

    sent_at: float | None = None
    link_count: int = 0
    recent: tuple[tuple[float, int], ...] = ()  # (at, link idx) of this recipient's other clicks


def _from_apple(ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in _APPLE_NET
    except ValueError:
        return False


def _has(ua: str, needles: Iterable[str]) -> bool:
    return any(n in ua for n in needles)


def _person_or_unknown(ua: str) -> HitClass:
    if ua.startswith("mozilla/") and _has(ua, _CLIENTS):
        return HitClass.HUMAN
    if _has(ua, ("outlook", "thunderbird", "mail/")):
        return HitClass.HUMAN
    return HitClass.UNKNOWN


def classify_open(ua: str | None, ip: str | None) -> HitClass:
    raw = (ua or "").strip()
    low = raw.lower()
    if not low:
        return HitClass.UNKNOWN
    if _has(low, _IMAGE_PROXIES):
        return HitClass.IMAGE_PROXY
    if raw == "Mozilla/5.0":
        return HitClass.APPLE_PRIVACY
    if _from_apple(ip) and "applewebkit" in low and "safari" not in low:
        return HitClass.APPLE_PRIVACY
    if "microsoft outlook" in low:  # Outlook desktop says "Microsoft Office/16.0 (…Microsoft Outlook…)"
        return HitClass.HUMAN
    if _has(low, _SCANNERS):
        return HitClass.SCANNER
    return _person_or_unknown(low)


def _burst(at: float, idx: int, ctx: ClickContext) -> bool:
    links = {i for t, i in ctx.recent if at - BURST_WINDOW <= t <= at + BURST_WINDOW} | {idx}
    if ctx.link_count >= 2 and len(links) >= ctx.link_count:
        return True
    return len(links) >= BURST_LINKS


def classify_click(ua: str | None, ip: str | None, at: float, idx: int, ctx: ClickContext) -> HitClass:
    del ip  # scanners egress from everywhere; their IPs are no better a signal than their UAs
    low = (ua or "").strip().lower()
    if low and _has(low, _SCANNERS):
        return HitClass.SCANNER
    if ctx.sent_at is not None and 0 <= at - ctx.sent_at < SCANNER_AFTER_SENT:
        return HitClass.SCANNER
    if _burst(at, idx, ctx):
        return HitClass.SCANNER
    if not low or _has(low, _IMAGE_PROXIES) or low == "mozilla/5.0":
        return HitClass.UNKNOWN
    return _person_or_unknown(low)
