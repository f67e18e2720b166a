"""`mailtrack bounce parse` loads only what it needs: no database layer, no event loop (start-up time)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SAMPLE = Path(__file__).resolve().parent / "bounce_samples" / "dsn-user-unknown.eml"

PROBE = """
import json, sys
from mailtrack.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print(json.dumps(sorted(m for m in ("sqlalchemy", "asyncio", "fastapi", "aiosmtpd", "mailtrack.store.inbound")
                        if m in sys.modules)))
"""


def _loaded(*args: str) -> tuple[list[str], str]:
    done = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    return json.loads(lines[-1]), "\n".join(lines[:-1])


def test_bounce_parse_does_not_load_the_store_or_an_event_loop() -> None:
    loaded, out = _loaded("bounce", "parse", "--json", str(SAMPLE))
    assert json.loads(out)["kind"] == "bounce"
    assert loaded == []


def test_bounce_list_still_attaches_from_the_inbound_component() -> None:
    loaded, out = _loaded("bounce", "--help")
    assert "list" in out and "show" in out and "explain" in out and "parse" in out
    assert "mailtrack.store.inbound" in loaded
