"""Independent DKIM verification: Perl Mail::DKIM (Debian libmail-dkim-perl) against a loopback DNS server."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).with_name("dkim_verify.pl")


def have_mail_dkim() -> bool:
    if shutil.which("perl") is None:
        return False
    return subprocess.run(["perl", "-MMail::DKIM::Verifier", "-e", "1"], capture_output=True).returncode == 0


needs_mail_dkim = pytest.mark.skipif(not have_mail_dkim(), reason="Mail::DKIM (libmail-dkim-perl) not installed")


def verify(message: bytes, resolver: str) -> tuple[bool, str]:
    """(all signatures pass, Mail::DKIM's report) for ``message``, asking the DNS server ``HOST:PORT``."""
    host, port = resolver.rsplit(":", 1)
    r = subprocess.run(["perl", str(SCRIPT), host, port], input=message, capture_output=True, timeout=60)
    return r.returncode == 0, (r.stdout + r.stderr).decode(errors="replace").strip()
