"""Turn a validated request body into store.NewEmail, with 422 errors that name the field."""

from __future__ import annotations

import base64
import binascii

from ..compose import EmailSource
from ..domain.addresses import (
    AddressError,
    check_extra_header,
    check_header_value,
    format_address,
    parse_address,
)
from ..errors import InputError
from ..store.submit import NewEmail, NewRecipient
from .schemas import EmailIn
from .size import encoded_size

MAX_METADATA = 50


def _fmt_size(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MB" if n >= 1024 * 1024 else f"{n} bytes"


def to_new_email(body: EmailIn, max_size: int, prefix: str = "", idempotency_key: str | None = None,
                 public_url: str = "") -> NewEmail:
    def fail(field: str, msg: str) -> InputError:
        return InputError(msg, field=f"{prefix}{field}")

    try:
        name, from_addr = parse_address(body.from_, "from")
    except AddressError as e:
        raise fail("from", str(e)) from e
    rcpts: list[NewRecipient] = []
    seen: set[str] = set()
    visible: dict[str, list[str]] = {"to": [], "cc": []}
    for kind in ("to", "cc", "bcc"):
        for i, raw in enumerate(getattr(body, kind)):
            try:
                dn, addr = parse_address(raw, f"{kind}[{i}]")
            except AddressError as e:
                raise fail(f"{kind}[{i}]", str(e)) from e
            if kind in visible:
                visible[kind].append(format_address(dn, addr))
            if addr.lower() in seen:
                continue  # one delivery per address, even when listed twice
            seen.add(addr.lower())
            rcpts.append(NewRecipient(dn, addr, kind))
    if not rcpts:
        raise fail("to", "at least one recipient is needed in to, cc or bcc")
    reply_to = None
    if body.reply_to:
        try:
            reply_to = format_address(*parse_address(body.reply_to, "reply_to"))
        except AddressError as e:
            raise fail("reply_to", str(e)) from e
    try:
        check_header_value(body.subject, "subject")
    except AddressError as e:
        raise fail("subject", str(e)) from e
    if not body.text and not body.html:
        raise fail("text", "give text, html or both")
    names: dict[str, str] = {}
    for k, v in body.headers.items():
        try:
            check_extra_header(k, v)
        except AddressError as e:
            raise fail(f"headers.{k}", str(e)) from e
        if k.lower() in names:
            raise fail(f"headers.{k}", f"header {k!r} repeats {names[k.lower()]!r}: header names are "
                                       "case-insensitive, give each one once")
        names[k.lower()] = k
    if len(body.metadata) > MAX_METADATA or any(len(k) > 100 or len(v) > 1000 for k, v in body.metadata.items()):
        raise fail("metadata", f"at most {MAX_METADATA} keys, keys ≤ 100 and values ≤ 1000 characters")
    files: list[tuple[str, str, bytes]] = []
    for i, a in enumerate(body.attachments):
        try:
            check_header_value(a.filename, "filename")
            check_header_value(a.content_type, "content_type")
        except AddressError as e:
            raise fail(f"attachments[{i}]", str(e)) from e
        if "/" not in a.content_type:
            raise fail(f"attachments[{i}].content_type",
                       f"{a.content_type!r} is not a MIME type like 'application/pdf'")
        try:
            data = base64.b64decode(a.content, validate=True)
        except (binascii.Error, ValueError) as e:
            raise fail(f"attachments[{i}].content", "content is not valid base64") from e
        files.append((a.filename, a.content_type, data))
    # cheap lower bound first: no encoding work for what is plainly too big
    size = len(body.subject) + len(body.text or "") + len(body.html or "") + sum(len(d) * 4 // 3 for *_, d in files)
    if size <= max_size:
        source = EmailSource(id="0" * 23, from_addr=format_address(name, from_addr), subject=body.subject,
                             to_header=", ".join(visible["to"]), cc_header=", ".join(visible["cc"]), reply_to=reply_to,
                             text=body.text, html=body.html, headers=dict(body.headers), attachments=tuple(files))
        size = encoded_size(source, public_url, tracked=body.tracking is not False)
    if size > max_size:
        raise fail("message", f"message is {_fmt_size(size)} as encoded for SMTP; the limit is {_fmt_size(max_size)}")
    src = body.source
    for field, value in (("source.reference", src and src.reference), ("source.event", src and src.event)):
        if value:
            try:
                check_header_value(value, field)
            except AddressError as e:
                raise fail(field, str(e)) from e
    return NewEmail(
        from_addr=format_address(name, from_addr), recipients=rcpts, subject=body.subject, text=body.text,
        html=body.html, reply_to=reply_to, to_header=", ".join(visible["to"]), cc_header=", ".join(visible["cc"]),
        attachments=files, headers=dict(body.headers), source_type=src.type if src else None,
        source_reference=src.reference if src else None, source_event=src.event if src else None,
        client=None if body.client is None else str(body.client), tracking=body.tracking,
        unsubscribe=body.unsubscribe,
        metadata=dict(body.metadata), idempotency_key=body.idempotency_key or idempotency_key, size=size,
    )
