"""HTML injection: link rewriting, pixel placement, the indices shared with extract_links."""

from __future__ import annotations

import re

import pytest

from mailtrack import tokens
from mailtrack.inject import extract_links, personalize_html

SECRET = "s3cret"
BASE = "https://t.example/"


def personal(html: str, rid: str = "abc123", **kw: object) -> str:
    return personalize_html(html, email_id="e1", recipient_id=rid, public_url=BASE, secret=SECRET, **kw)  # type: ignore[arg-type]


def click(rid: str, idx: int, url: str) -> str:
    return f"https://t.example/c/{tokens.click_url_token(SECRET, rid, idx, url)}"


def test_rewrites_trackable_links_in_order_and_keeps_the_rest() -> None:
    html = ("<html><BODY><A HREF=https://a.example/x?a=1&amp;b=2>A</A>"
            "<a class='q' href = 'http://b.example/y' title=\"a>b\">B</a>"
            '<a href="mailto:x@y.example">m</a><a href="tel:+15550100">t</a><a href="#top">top</a>'
            '<a data-mailtrack="off" href="https://private.example/">p</a>'
            '<a href="javascript:alert(1)">j</a><a href="/relative">r</a><a href="//proto.example">s</a>'
            "<!-- <a href='https://commented.example/'>c</a> -->"
            '<a\n  href="\n https://c.example/z\t">C</a></BODY></html>')
    assert extract_links(html) == ["https://a.example/x?a=1&b=2", "http://b.example/y", "https://c.example/z"]
    out = personal(html)
    assert f'<A HREF="{click("abc123", 0, "https://a.example/x?a=1&b=2")}">' in out
    assert f"href = '{click('abc123', 1, 'http://b.example/y')}' title=\"a>b\"" in out
    assert click("abc123", 2, "https://c.example/z") in out
    for kept in ("mailto:x@y.example", "tel:+15550100", '"#top"', "https://private.example/", "javascript:alert(1)",
                 '"/relative"', '"//proto.example"', "https://commented.example/"):
        assert kept in out
    pixel = f'<img src="https://t.example/o/{tokens.open_token(SECRET, "abc123")}.gif" width="1" height="1" alt=""'
    assert pixel in out and out.index(pixel) < out.index("</BODY>")
    assert out.count("<img") == 1


def test_pixel_appended_without_body_and_only_before_the_last_real_body_close() -> None:
    assert personal("<p>hi</p>").startswith("<p>hi</p><img src=")
    out = personal("<body><!-- </body> --><p>x</p></body>")
    assert out.endswith('"></body>') and "<!-- </body> -->" in out


def test_excluded_domains_are_not_rewritten_but_keep_their_index() -> None:
    html = '<a href="https://portal.acme.example/a">1</a><a href="https://other.example/">2</a>'
    out = personal(html, exclude_domains=["acme.example"])
    assert "https://portal.acme.example/a" in out and click("abc123", 1, "https://other.example/") in out
    assert "/c/abc123-0-" not in out
    assert extract_links(html) == ["https://portal.acme.example/a", "https://other.example/"]


def test_outlook_conditional_comments_are_scanned_and_script_is_not() -> None:
    html = ("<!--[if mso]><a href='https://mso.example/'>o</a><![endif]-->"
            "<script>var s = '<a href=\"https://script.example/\">';</script><style>a{}</style>")
    assert extract_links(html) == ["https://mso.example/"]


def test_two_recipients_get_different_tokens_for_the_same_html() -> None:
    html = '<body><a href="https://a.example/">a</a></body>'
    a, b = personal(html, rid="aaa"), personal(html, rid="bbb")
    url = "https://a.example/"
    assert a != b and click("aaa", 0, url) in a and click("bbb", 0, url) in b and "/c/aaa-" not in b


@pytest.mark.parametrize("n", [0, 1, 50])
def test_every_rewritten_link_maps_to_its_extracted_url(n: int) -> None:
    html = "".join(f'<a href="https://x{i}.example/p?q={i}&amp;r=1">{i}</a>' for i in range(n))
    urls = extract_links(html)
    out = personal(html)
    found = re.findall(r"/c/([^\"']+)", out)
    assert len(found) == len(urls) == n
    for i, tok in enumerate(found):
        assert urls[i] == f"https://x{i}.example/p?q={i}&r=1"
        assert tokens.parse_click_url(SECRET, tok) == ("abc123", i, urls[i])
        assert tokens.parse_click_url("other-secret", tok) is None
