"""Hit classification tables: user agents, Apple's network, timing."""

from __future__ import annotations

import pytest

from mailtrack.tracking.classify import SCANNER_AFTER_SENT, ClickContext, HitClass, classify_click, classify_open

CHROME = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"
APPLE_MAIL = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko)"
IPHONE = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148"


@pytest.mark.parametrize(("ua", "ip", "expected"), [
    (CHROME, "203.0.113.9", HitClass.HUMAN),
    (APPLE_MAIL, "203.0.113.9", HitClass.HUMAN),
    (IPHONE, "198.51.100.4", HitClass.HUMAN),
    (APPLE_MAIL, "17.58.1.20", HitClass.APPLE_PRIVACY),
    ("Mozilla/5.0", "203.0.113.9", HitClass.APPLE_PRIVACY),
    ("Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko Firefox/11.0 (via ggpht.com GoogleImageProxy)", "66.249.1.1",
     HitClass.IMAGE_PROXY),
    ("YahooMailProxy; https://help.yahoo.com/kb/yahoo-mail-proxy-SLN28749.html", "1.2.3.4", HitClass.IMAGE_PROXY),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0.17328; Pro)", "203.0.113.9", HitClass.HUMAN),
    ("Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0", "1.2.3.4",
     HitClass.SCANNER),
    ("curl/8.5.0", "1.2.3.4", HitClass.SCANNER),
    ("python-requests/2.31", None, HitClass.SCANNER),
    ("Barracuda Sentinel (EE)", "1.2.3.4", HitClass.SCANNER),
    ("", "1.2.3.4", HitClass.UNKNOWN),
    (None, None, HitClass.UNKNOWN),
    ("SomethingElse/1.0", "not-an-ip", HitClass.UNKNOWN),
])
def test_open_classes(ua: str | None, ip: str | None, expected: HitClass) -> None:
    assert classify_open(ua, ip) == expected


LONG_AGO = ClickContext(sent_at=1_000.0, link_count=5)


@pytest.mark.parametrize(("ua", "expected"), [
    (CHROME, HitClass.HUMAN),
    (IPHONE, HitClass.HUMAN),
    ("Mimecast-URL-Protect/1.0", HitClass.SCANNER),
    ("Proofpoint URL Defense", HitClass.SCANNER),
    ("Microsoft Office/16.0 (Windows NT 10.0; Microsoft Outlook 16.0)", HitClass.SCANNER),  # Safe Links / preview
    ("Symantec Email Security", HitClass.SCANNER),
    ("Go-http-client/1.1", HitClass.SCANNER),
    ("Mozilla/5.0", HitClass.UNKNOWN),
    ("", HitClass.UNKNOWN),
])
def test_click_classes_by_user_agent(ua: str, expected: HitClass) -> None:
    assert classify_click(ua, "203.0.113.9", 5_000.0, 0, LONG_AGO) == expected


def test_click_within_seconds_of_delivery_is_a_scanner() -> None:
    ctx = ClickContext(sent_at=1_000.0, link_count=3)
    assert classify_click(CHROME, None, 1_000.0 + SCANNER_AFTER_SENT / 2, 0, ctx) == HitClass.SCANNER
    assert classify_click(CHROME, None, 1_000.0 + SCANNER_AFTER_SENT + 1, 0, ctx) == HitClass.HUMAN
    assert classify_click(CHROME, None, 1_000.0, 0, ClickContext(sent_at=None, link_count=3)) == HitClass.HUMAN


def test_every_link_clicked_within_seconds_is_a_scanner() -> None:
    at = 10_000.0
    two = ClickContext(sent_at=1_000.0, link_count=2, recent=((at - 1, 0),))
    assert classify_click(CHROME, None, at, 1, two) == HitClass.SCANNER
    # the same link twice is a person double-clicking, not a sweep
    again = ClickContext(sent_at=1_000.0, link_count=2, recent=((at - 1, 1),))
    assert classify_click(CHROME, None, at, 1, again) == HitClass.HUMAN
    # clicks long apart are a person reading
    apart = ClickContext(sent_at=1_000.0, link_count=2, recent=((at - 600, 0),))
    assert classify_click(CHROME, None, at, 1, apart) == HitClass.HUMAN
    burst = ClickContext(sent_at=1_000.0, link_count=10, recent=((at - 1, 0), (at - 0.5, 1)))
    assert classify_click(CHROME, None, at, 2, burst) == HitClass.SCANNER
