"""DATA read in bulk (submission/data.py) keeps aiosmtpd's line-by-line rules, however the bytes arrive."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mailtrack.store.db import Store
from mailtrack.submission.data import LINE_TOO_LONG, TOO_BIG, Data, read_data
from tests.helpers.submission import SIM, running

LINE_LIMIT = 1001  # aiosmtpd's line_length_limit, also its StreamReader's limit
FOLLOWING = b"QUIT\r\n"


def reference(stream: bytes, size_limit: int | None) -> tuple[Data, bytes]:
    """aiosmtpd's smtp_DATA loop, line by line: the message (or refusal) and what is left after the '.' line."""
    lines, size, state, pos = [], 0, None, 0
    while True:
        end = stream.index(b"\r\n", pos) + 2
        line, pos = stream[pos:end], end
        if line == b".\r\n":
            break
        size += len(line)
        if state is None and size_limit is not None and size > size_limit:
            state = TOO_BIG.format(size=size_limit)
        if state is None and len(line) > LINE_LIMIT:
            state = LINE_TOO_LONG
        lines.append(line[1:] if line.startswith(b".") else line)
    rest = stream[pos:]
    return (Data(refusal=state) if state else Data(b"".join(lines))), rest


async def read_in_pieces(stream: bytes, cuts: list[int], size_limit: int | None) -> tuple[Data, bytes]:
    reader = asyncio.StreamReader(limit=LINE_LIMIT)
    task = asyncio.create_task(read_data(reader, size_limit, LINE_LIMIT))
    start = 0
    for cut in [*sorted(set(cuts)), len(stream)]:
        reader.feed_data(stream[start:cut])
        start = cut
        await asyncio.sleep(0)
    reader.feed_eof()
    data = await asyncio.wait_for(task, 10)
    return data, await reader.read()


@pytest.mark.parametrize("body", [
    b"",  # an empty message: the '.' line comes first
    b"hello\r\n",
    b"..starts with a dot\r\nand.\r\nends.\r\n..\r\n...x\r\n",  # stuffed dots and lines that end in '.'
    b"a bare LF then a dot\n.\r\nis not the end\r\n",  # smuggling is refused later (message.py), not here
    b"a bare CR\r.\r\n\r\nstill data\r\n",
    (b"x" * 70 + b"\r\n") * 2000,  # many times the reader's limit
    b"y" * 998 + b"\r\n",  # the longest line allowed
])
async def test_bulk_read_matches_the_line_by_line_rules(body: bytes) -> None:
    stream = body + b".\r\n" + FOLLOWING
    expected = reference(stream, 25_000_000)
    assert await read_in_pieces(stream, [], 25_000_000) == expected
    ends = len(body)  # byte by byte around the '.' line, where a split could hide the end
    assert await read_in_pieces(stream, list(range(max(0, ends - 6), ends + 6)), 25_000_000) == expected


async def test_a_line_too_long_and_a_message_too_big_are_refused_after_the_whole_data() -> None:
    long_line = b"z" * 1000 + b"\r\n"
    data, rest = await read_in_pieces(b"ok\r\n" + long_line + b"more\r\n.\r\n" + FOLLOWING, [], 10_000)
    assert data == Data(refusal=LINE_TOO_LONG) and rest == FOLLOWING
    data, rest = await read_in_pieces((b"x" * 98 + b"\r\n") * 200 + b".\r\n" + FOLLOWING, [7, 5000], 10_000)
    assert data == Data(refusal=TOO_BIG.format(size=10_000)) and rest == FOLLOWING


lines = st.lists(st.one_of(
    st.sampled_from([b".", b"..", b"x.", b".x", b"\n.", b"\r", b"\n", b"", b"a" * 1000, b"b" * 997]),
    st.binary(max_size=80).map(lambda b: b.replace(b"\r\n", b"")),
), max_size=30)


@settings(max_examples=300, deadline=None)
@given(lines, st.lists(st.integers(min_value=0, max_value=40_000), max_size=8),
       st.sampled_from([None, 200, 5000]))
async def test_any_data_split_anywhere_reads_as_aiosmtpd_reads_it(
    body_lines: list[bytes], cuts: list[int], size_limit: int | None,
) -> None:
    body = b"".join(line + b"\r\n" for line in body_lines if line != b".")
    stream = body + b".\r\n" + FOLLOWING
    got = await read_in_pieces(stream, [c for c in cuts if c < len(stream)], size_limit)
    want = reference(stream, size_limit)
    if want[0].refusal is not None and got[0].refusal is not None:
        # both limits broken: the first in the data is answered, and data.py checks lines only up to the size limit
        assert got[1] == want[1]
    else:
        assert got == want


async def test_smuggled_end_of_data_over_the_wire_is_refused_and_the_session_goes_on(
    any_store: Store, tmp_path: Path
) -> None:
    """A '.' after a bare LF neither ends DATA early nor is accepted; the next message in the session is."""
    head = f"From: ops@acme.test\r\nTo: success@{SIM}\r\nSubject: data\r\n\r\n".encode()
    envelope = b"MAIL FROM:<app@acme.test>\r\nRCPT TO:<success@" + SIM.encode() + b">\r\nDATA\r\n"

    def go(port: int) -> list[bytes]:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            f = sock.makefile("rb")
            f.readline()
            sock.sendall(b"EHLO client.test\r\n")
            while not f.readline().startswith(b"250 "):
                pass
            sock.sendall(envelope)
            replies = [f.readline() for _ in range(3)]
            sock.sendall(head + b"one\n.\r\nMAIL FROM:<evil@acme.test>\r\n" + b"..two\r\n.\r\n" + envelope)
            replies += [f.readline() for _ in range(4)]
            sock.sendall(head + b"three\r\n.\r\nQUIT\r\n")
            replies += [f.readline(), f.readline()]
        return replies

    async with running(tmp_path, any_store, worker=False, submission_trusted_networks="127.0.0.1/32=acme") as r:
        replies = await asyncio.to_thread(go, r.port)
        assert [x[:3] for x in replies] == [b"250", b"250", b"354", b"554", b"250", b"250", b"354", b"250", b"221"]
        assert b"smuggling" in replies[3]
        raw = await asyncio.to_thread(r.view, replies[7].decode().split()[-1])
        assert raw["subject"] == "data"
