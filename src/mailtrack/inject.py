"""Open pixel and click rewriting for one recipient's HTML, by a single regex pass over tags.

Link indices: every ``<a href>`` whose (entity-decoded) URL is http(s) with a host, and that is not
marked ``data-mailtrack="off"``, gets the next index, in document order. ``extract_links`` (run at
submission, stored in ``links``) and ``personalize_html`` (run at compose) enumerate the very same
links, so index N always names the URL stored at send time. Excluded domains still take an index
(they are just not rewritten), which keeps the numbering independent of configuration.

Skipped by the scanner: ordinary comments and the content of ``<script>``/``<style>``. Outlook's
conditional comments (``<!--[if mso]>``) are scanned, because Outlook renders their links.
"""

from __future__ import annotations

import html as _html
import re
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit

from . import tokens

MAX_LINKS = 2000  # tokens allow 6 digits; a bigger message is surely not a business email

# The shared "<" comes first so the engine skips to the next "<" instead of trying every
# alternative at every character (14x faster on a typical message).
_TOKENS = re.compile(
    r"""
    <(?:
        (?P<comment>!--(?!\[if).*?(?:-->|\Z))
      | (?P<raw>(?P<rawname>script|style)\b.*?(?:</(?P=rawname)\s*>|\Z))
      | (?P<a>a(?=[\s/>])(?:[^>"']|"[^"]*"|'[^']*')*>)
      | (?P<body>/body\s*>)
    )
    """,
    re.IGNORECASE | re.DOTALL | re.VERBOSE,
)
_ATTR = re.compile(
    r"""([^\s"'<>/=]+)(?:\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+)))?""",
    re.DOTALL,
)
# browsers drop ASCII tab/newline anywhere in a URL and trim C0 controls and spaces at the ends
_URL_NOISE = re.compile(r"[\t\n\r]")
_URL_TRIM = "".join(chr(c) for c in range(0x21))

PIXEL_STYLE = "display:block;width:1px;height:1px;border:0;margin:0;padding:0"


def _attrs(tag: str) -> Iterator[tuple[str, str | None, int, int]]:
    """(lower-cased name, raw value or None, value start, value end) for each attribute of a tag."""
    inner_start = 2  # after '<a'
    end = len(tag) - 1  # before '>'
    for m in _ATTR.finditer(tag, inner_start, end):
        name = m.group(1).lower()
        for g in (2, 3, 4):
            if m.group(g) is not None:
                yield name, m.group(g), m.start(g), m.end(g)
                break
        else:
            yield name, None, m.end(1), m.end(1)


def _clean_url(raw: str) -> str:
    return _URL_NOISE.sub("", _html.unescape(raw)).strip(_URL_TRIM)


def _host(url: str) -> str | None:
    """Lower-cased host of an http(s) URL, else None (mailto:, tel:, #anchor, relative, javascript:)."""
    scheme, sep, _ = url.partition(":")
    if not sep or scheme.lower() not in ("http", "https"):
        return None
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return None
    return host or None


def _href(tag: str) -> tuple[str, int, int] | None:
    """The first href of an anchor tag (cleaned URL, value span), unless the link opts out."""
    href: tuple[str, int, int] | None = None
    for name, value, start, end in _attrs(tag):
        if name == "data-mailtrack" and (value or "").strip().lower() == "off":
            return None
        if name == "href" and href is None and value is not None:
            href = (_clean_url(value), start, end)
    return href


def _trackable(tag: str) -> tuple[str, str, int, int] | None:
    """(url, host, value start, value end) when this anchor gets a link index."""
    found = _href(tag)
    if found is None:
        return None
    url, start, end = found
    host = _host(url)
    if host is None:
        return None
    return url, host, start, end


def _excluded(host: str, domains: Collection[str]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)


def extract_links(html: str) -> list[str]:
    """The trackable URLs of an HTML body in index order (entity-decoded, as stored in ``links``)."""
    out: list[str] = []
    for m in _TOKENS.finditer(html):
        if m.lastgroup != "a":
            continue
        found = _trackable(m.group())
        if found is not None:
            out.append(found[0])
            if len(out) >= MAX_LINKS:
                break
    return out


def pixel_tag(public_url: str, token: str) -> str:
    return (f'<img src="{public_url.rstrip("/")}/o/{token}.gif" width="1" height="1" alt="" '
            f'style="{PIXEL_STYLE}">')


@dataclass(frozen=True)
class TrackedHtml:
    """One email's HTML cut at its per-recipient tokens: ``parts[0] tok parts[1] tok … parts[-1]``.

    ``slots[i]`` says which token goes between ``parts[i]`` and ``parts[i+1]``: a link index, or
    ``PIXEL`` for the open pixel; ``urls[i]`` is that link's target, carried (signed) in its click
    token. Everything else (URL prefixes, quotes, the pixel tag) is in the parts, so a recipient
    costs one HMAC per token and a join.
    """

    parts: tuple[str, ...]
    slots: tuple[int, ...]
    urls: tuple[str, ...]

    def tokens(self, secret: str, recipient_id: str) -> list[str]:
        return [tokens.open_token(secret, recipient_id) if s == PIXEL
                else tokens.click_url_token(secret, recipient_id, s, url)
                for s, url in zip(self.slots, self.urls, strict=True)]

    def render(self, secret: str, recipient_id: str) -> str:
        out = [self.parts[0]]
        for tok, part in zip(self.tokens(secret, recipient_id), self.parts[1:], strict=True):
            out += (tok, part)
        return "".join(out)


PIXEL = -1


def split_html(html: str, *, public_url: str, exclude_domains: Collection[str] = ()) -> TrackedHtml:
    """Rewrite ``html`` once for tracking, leaving a slot wherever a recipient's token goes."""
    base = public_url.rstrip("/")
    domains = tuple(d.strip().lower().lstrip(".") for d in exclude_domains if d.strip())
    edits: list[tuple[int, int, str, int, str, str]] = []  # (start, end, before token, slot, after, URL)
    idx = 0
    body_at = -1
    for m in _TOKENS.finditer(html):
        kind = m.lastgroup
        if kind == "body":
            body_at = m.start()
            continue
        if kind != "a" or idx >= MAX_LINKS:
            continue
        tag = m.group()
        found = _trackable(tag)
        if found is None:
            continue
        url, host, vstart, vend = found
        i = idx
        idx += 1
        if domains and _excluded(host, domains):
            continue
        q = "" if tag[vstart - 1] in "\"'" else '"'
        edits.append((m.start() + vstart, m.start() + vend, f"{q}{base}/c/", i, q, url))
    at = body_at if body_at >= 0 else len(html)
    before, after = pixel_tag(base, "\0").split("\0")
    edits.append((at, at, before, PIXEL, after, ""))
    edits.sort(key=lambda e: e[0])
    parts: list[str] = []
    slots: list[int] = []
    urls: list[str] = []
    pos = 0
    pending = ""
    for start, end, pre, slot, post, url in edits:
        parts.append(pending + html[pos:start] + pre)
        slots.append(slot)
        urls.append(url)
        pending = post
        pos = end
    parts.append(pending + html[pos:])
    return TrackedHtml(tuple(parts), tuple(slots), tuple(urls))


def personalize_html(
    html: str,
    *,
    email_id: str,
    recipient_id: str,
    public_url: str,
    secret: str,
    exclude_domains: Collection[str] = (),
) -> str:
    """One recipient's HTML: trackable links → ``PUBLIC_URL/c/TOKEN/URL``, pixel before ``</body>``.

    ``email_id`` is accepted so callers name the message; link indices come from the HTML itself,
    which is the same HTML ``extract_links`` saw at submission.
    """
    del email_id  # tokens name the recipient; the recipient row names the email
    return split_html(html, public_url=public_url, exclude_domains=exclude_domains).render(secret, recipient_id)
