"""The size of an email as it goes out over SMTP (what MAILTRACK_MAX_MESSAGE_SIZE limits).

Counting characters misses the encodings: "€" is 3 bytes of UTF-8 and 9 in quoted-printable,
base64 adds a third plus line breaks. So the shared part of the message is built exactly as
delivery will build it; the per-recipient parts are bounded from above.
"""

from __future__ import annotations

import binascii
import dataclasses
import re

from ..compose import EmailSource, build_template

# Message-ID <RID.EMAILID.MAC@bounce-domain> and X-Mailtrack-ID RID-MAC with their names and CRLFs.
PER_RECIPIENT = 200 + 255
# A tracked link becomes PUBLIC_URL/c/TOKEN: at most this many bytes beyond PUBLIC_URL (the pixel as well).
_TOKEN_PATH = 90
_HREF = re.compile(r"""(?i)\bhref\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]*))""")


def encoded_size(email: EmailSource, public_url: str = "", tracked: bool = True) -> int:
    """Bytes on the wire for one recipient (an upper bound for the per-recipient parts)."""
    tracked = tracked and email.html is not None
    template = build_template(dataclasses.replace(email, tracking=tracked))  # a tracked HTML part is a slot
    size = sum(len(c) for c in template.chunks if isinstance(c, bytes)) + PER_RECIPIENT
    if tracked and email.html is not None:
        # the slot is quoted-printable HTML with rewritten links and a pixel
        qp = binascii.b2a_qp(email.html.replace("\r\n", "\n").encode("utf-8"), istext=True)
        size += len(qp) + qp.count(b"\n") + 1 + len(public_url) + _TOKEN_PATH + 200
        tracked_url = len(public_url) + _TOKEN_PATH
        for m in _HREF.finditer(email.html):
            size += max(0, tracked_url - len(m.group(1) or m.group(2) or m.group(3) or ""))
    return size
