"""Pure parts of the inbound server: which addresses are ours, and the MIME shape scan."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailtrack.inbound.handler import is_ours
from mailtrack.inbound.limits import Limits, check, header_block_size, mime_shape
from tests.conftest import make_config
from tests.test_inbound_payloads import arf, dsn

DOMAIN = "bounces.example.test"


@pytest.mark.parametrize(("address", "expected"), [
    ("bounces+abc-0123@bounces.example.test", True),
    ("<Bounces+ABC-0123@BOUNCES.example.test.>", True),
    ("fbl@bounces.example.test", True),
    ("postmaster@bounces.example.test", True),
    ("abuse@bounces.example.test", True),
    ("bounces@bounces.example.test", False),
    ("bounces+a_b@bounces.example.test", False),
    ("info@bounces.example.test", False),
    ("fbl@example.test", None),
    ("fbl@xbounces.example.test", None),
    ("no-at-sign", None),
])
def test_is_ours(address: str, expected: bool | None) -> None:
    assert is_ours(address, DOMAIN) is expected


def _nested(depth: int) -> bytes:
    inner = b"Content-Type: text/plain\r\n\r\nleaf\r\n"
    for d in range(depth, 0, -1):
        inner = (b'Content-Type: multipart/mixed; boundary="b%d"\r\n\r\npreamble\r\n--b%d\r\n' % (d, d)
                 + inner + b"--b%d--\r\n" % d)
    return inner


@pytest.mark.parametrize("depth", [1, 2, 5, 9])
def test_mime_depth_is_counted(depth: int) -> None:
    assert mime_shape(_nested(depth)) == (depth, depth)


def test_embedded_messages_count_as_a_level() -> None:
    headers = "Message-ID: <a.b@x>\r\nContent-Type: multipart/alternative; boundary=\"inner\"\r\n"
    raw = arf("fbl@x", "a@example.test", headers + "\r\n--inner\r\n\r\nt\r\n--inner--")
    depth, parts = mime_shape(raw)
    assert depth == 3  # report → message/rfc822 → multipart/alternative
    assert parts == 4  # three report parts + one inside the embedded message


def test_a_dsn_is_well_within_the_defaults() -> None:
    raw = dsn("b@x", [("a@example.test", "failed", "5.1.1", "user unknown")], "Subject: s\r\n")
    assert mime_shape(raw) == (1, 3)
    assert check(raw, Limits()) is None


def test_boundaries_only_count_when_declared() -> None:
    raw = b"Subject: s\r\n\r\n--fake\r\n--fake\r\n--fake--\r\n"
    assert mime_shape(raw) == (0, 0)


def test_header_block_size() -> None:
    assert header_block_size(b"A: b\r\nC: d\r\n\r\nbody", 100) == 10
    assert header_block_size(b"A: b\n\nbody", 100) == 4
    assert header_block_size(b"A: b", 100) == 4
    assert header_block_size(b"A: " + b"x" * 500, 100) == 101
    assert check(b"A: " + b"x" * 500 + b"\r\n\r\nbody", Limits(max_header_bytes=100)) == "header"


def test_limits_follow_the_config_size(tmp_path: Path) -> None:
    config = make_config(tmp_path, inbound_max_size="3MB")
    assert Limits.from_config(config).max_size == 3 * 1024 * 1024
    assert Limits.from_config(config, max_recipients=5).max_recipients == 5
