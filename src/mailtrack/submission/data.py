"""DATA read in bulk: up to the lone '.' line in a few reads instead of aiosmtpd's one await per line.

The rules are aiosmtpd's (RFC 5321 4.5.2, 4.5.3.1.6), on the whole buffer instead of per line:

    lines           end at CRLF only (a bare LF or CR stays inside its line; message.py refuses
                    the smuggling sequences and normalises the rest)
    end of DATA     a '.' line: ".\r\n" at the start of the data or right after a CRLF
    line length     over ``line_limit`` octets with its CRLF and transparent dot → LINE_TOO_LONG
    size            over ``size_limit`` octets as sent (before unstuffing)   → TOO_BIG
                    (whichever comes first in the data is answered; data past the size limit is
                    read and dropped, never kept)
    unstuffing      one leading '.' removed from each line
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

END = b".\r\n"
CRLF = b"\r\n"
LINE_TOO_LONG = "500 5.5.2 line too long: at most 998 characters (RFC 5321 4.5.3.1.6)"
TOO_BIG = "552 5.3.4 message size exceeds the limit of {size} bytes"


@dataclass(frozen=True)
class Data:
    """The message as received (unstuffed), or the reply that says why it was not kept."""

    content: bytes = b""
    refusal: str | None = None


async def read_data(reader: asyncio.StreamReader, size_limit: int | None, line_limit: int) -> Data:
    """Read one DATA section from ``reader``, leaving whatever follows the '.' line (pipelined commands)."""
    kept = bytearray()
    size = 0
    prev = CRLF  # the data starts a line: the DATA command's own CRLF precedes it
    while True:
        try:
            piece = await reader.readuntil(END)
        except asyncio.LimitOverrunError as e:
            # the reader's limit is aiosmtpd's line limit: take what cannot hold the '.' line's start
            piece = await reader.readexactly(e.consumed)
        ended = piece.endswith(END) and _tail(prev, piece[:-3]) == CRLF
        if ended:
            piece = piece[:-3]
        if size_limit is None or size <= size_limit:
            kept += piece
        size += len(piece)
        prev = _tail(prev, piece)
        if ended:
            break
    if _has_long_line(kept[: size_limit if size_limit is not None else len(kept)], line_limit):
        return Data(refusal=LINE_TOO_LONG)
    if size_limit is not None and size > size_limit:
        return Data(refusal=TOO_BIG.format(size=size_limit))
    return Data(unstuff(bytes(kept)))


def _tail(prev: bytes, piece: bytes) -> bytes:
    """The last two octets of everything read so far."""
    return piece[-2:] if len(piece) >= 2 else (prev + piece)[-2:]


def _has_long_line(data: bytearray, line_limit: int) -> bool:
    if len(data) + 2 <= line_limit:
        return False
    return max(map(len, data.split(CRLF))) + 2 > line_limit


def unstuff(data: bytes) -> bytes:
    """Remove the transparent dot of each line (a '.' that starts one)."""
    if data.startswith(b"."):
        data = data[1:]
    return data.replace(b"\r\n.", CRLF)
