"""Limits on what the inbound server accepts, and a cheap scan of a message's MIME shape.

The scan runs before a message is stored, so a hostile report (thousands of parts, deep nesting,
megabytes of headers) is refused at DATA instead of reaching the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..config import Config


@dataclass(frozen=True)
class Limits:
    max_size: int = 10 * 1024 * 1024
    max_recipients: int = 20  # per message; a report has one, a mailing a few
    max_header_bytes: int = 256 * 1024  # the top-level header block
    max_mime_depth: int = 16
    max_mime_parts: int = 500
    idle_timeout: float = 60.0  # silence between commands (aiosmtpd's timeout), answered 421 4.4.2
    progress_timeout: float = 120.0  # without an accepted recipient or message; NOOP keep-alives don't count
    max_session: float = 600.0  # whole connection, however busy
    max_commands: int = 100  # each command name, per connection
    max_idle_commands: int = 10  # NOOP, RSET, HELP, VRFY, EXPN each, per connection
    max_connections: int = 200  # in total, answered 421 4.7.0
    max_per_ip: int = 10  # from one client address, answered 421 4.7.0

    def command_budget(self) -> dict[str, int]:
        """aiosmtpd's per-command call limits: commands that make no progress get a small budget."""
        idle = min(self.max_idle_commands, self.max_commands)
        return {"*": self.max_commands, **{c: idle for c in ("NOOP", "RSET", "HELP", "VRFY", "EXPN")}}

    @classmethod
    def from_config(cls, config: Config, **over: float) -> Limits:
        values: dict[str, float] = {"max_size": config.inbound_max_size, **over}
        return cls(**values)  # type: ignore[arg-type]


_CONTENT_TYPE = re.compile(rb"(?im)^content-type[ \t]*:[ \t]*([^\r\n]*(?:\r?\n[ \t][^\r\n]*)*)")
_BOUNDARY = re.compile(rb'(?i)\bboundary[ \t]*=[ \t]*(?:"([^"\r\n]{1,200})"|([^\s;"]{1,200}))')
_EMBEDDED = (b"message/rfc822", b"message/global")


def header_block_size(raw: bytes, cap: int) -> int:
    """Bytes before the first empty line (or cap + 1 when there is none within cap)."""
    window = raw[: cap + 4]
    ends = [i for i in (window.find(b"\r\n\r\n"), window.find(b"\n\n")) if i != -1]
    if ends:
        return min(ends)
    return len(raw) if len(raw) <= cap else cap + 1


def _container(headers: bytes) -> tuple[str, bytes | None]:
    """What an entity's headers make it: ("multipart", boundary), ("message", None) or ("leaf", None)."""
    found = _CONTENT_TYPE.search(headers)
    if found is None:
        return "leaf", None
    value = found.group(1)
    lowered = value.lower().lstrip()
    if lowered.startswith(b"multipart/"):
        b = _BOUNDARY.search(value)
        if b is not None:
            return "multipart", (b.group(1) or b.group(2)).rstrip()
        return "leaf", None
    if lowered.startswith(_EMBEDDED):
        return "message", None
    return "leaf", None


def mime_shape(raw: bytes) -> tuple[int, int]:
    """(deepest nesting, number of parts) as the boundaries in the text show them."""
    stack: list[bytes | None] = []  # open containers, innermost last; None = an embedded message
    depth = parts = 0
    headers: list[bytes] | None = []  # collecting an entity's headers; None while in a body
    for line in raw.split(b"\n"):
        line = line.rstrip(b"\r")
        if headers is not None:
            if line.strip():
                headers.append(line)
                continue
            kind, boundary = _container(b"\n".join(headers))
            headers = None
            if kind == "multipart":
                stack.append(boundary)
            elif kind == "message":
                stack.append(None)
                headers = []
            depth = max(depth, len(stack))
            continue
        if not line.startswith(b"--"):
            continue
        token = line.rstrip()
        for i in range(len(stack) - 1, -1, -1):
            b = stack[i]
            if b is None:
                continue
            if token == b"--" + b:
                del stack[i + 1:]
                parts += 1
                headers = []
                break
            if token == b"--" + b + b"--":
                del stack[i:]
                break
    return depth, parts


def check(raw: bytes, limits: Limits) -> str | None:
    """The name of the limit a message breaks, or None."""
    if header_block_size(raw, limits.max_header_bytes) > limits.max_header_bytes:
        return "header"
    depth, parts = mime_shape(raw)
    if depth > limits.max_mime_depth:
        return "depth"
    if parts > limits.max_mime_parts:
        return "parts"
    return None
