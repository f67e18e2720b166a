"""`mailtrack demo` end to end: a real process with the simulator, worker, inbound server and tracking.

With MAILTRACK_SCREENSHOTS=1 (and chromium present) it also saves the README screenshots to docs/.
"""

from __future__ import annotations

import importlib.util
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
NEEDED = ("mailtrack.delivery.worker", "mailtrack.inbound.server", "mailtrack.tracking.routes", "mailtrack.simulator")


def _missing() -> list[str]:
    out = []
    for mod in NEEDED:
        try:
            if importlib.util.find_spec(mod) is None:
                out.append(mod)
        except ImportError:
            out.append(mod)
    return out


MISSING = _missing()
pytestmark = pytest.mark.skipif(bool(MISSING), reason=f"the demo needs {', '.join(MISSING)} (not written yet)")

WANT_STATUSES = {"sent", "soft_bounce", "hard_bounce", "rejected"}
WANT_EVENTS = {"deferred", "opened", "clicked", "complained"}


def _get(url: str, key: str) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})  # noqa: S310 - loopback
    with urllib.request.urlopen(req, timeout=5) as r:  # noqa: S310 - loopback
        return json.loads(r.read())


def _pump(stream: Any, sink: queue.Queue[str], keep: list[str]) -> None:
    for line in stream:
        keep.append(line)
        sink.put(line)


def test_demo_shows_every_status_within_90s(tmp_path: Path) -> None:
    env = {**os.environ, "MAILTRACK_SECRET_KEY": "demo-test-secret", "MAILTRACK_LOG_LEVEL": "warning"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "mailtrack.cli", "demo", "--duration", "90", "--http", "127.0.0.1:0",
         "--db", str(tmp_path / "demo.db")],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue[str] = queue.Queue()
    out: list[str] = []
    err: list[str] = []
    threading.Thread(target=_pump, args=(proc.stdout, lines, out), daemon=True).start()
    threading.Thread(target=_pump, args=(proc.stderr, queue.Queue(), err), daemon=True).start()
    try:
        info: dict[str, str] = {}
        deadline = time.monotonic() + 30
        while "API key" not in info:
            assert time.monotonic() < deadline and proc.poll() is None, f"demo did not start: {out} {err}"
            try:
                line = lines.get(timeout=1)
            except queue.Empty:
                continue
            name, sep, value = line.partition(": ")
            if sep:
                info[name] = value.strip()
        base = info["URL"].removesuffix("/emails")
        key = info["API key"]
        email, password = info["Sign in"].split(" / ")
        stats: dict[str, Any] = {}
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                stats = _get(f"{base}/api/v1/stats", key)
            except OSError:  # the HTTP server may still be binding
                time.sleep(0.2)
                continue
            if WANT_STATUSES <= set(stats["statuses"]) and WANT_EVENTS <= set(stats["events"]):
                break
            time.sleep(0.5)
        assert WANT_STATUSES <= set(stats["statuses"]), stats
        assert WANT_EVENTS <= set(stats["events"]), stats
        notes = _get(f"{base}/api/v1/notes/T-1042", key)["notes"]
        seen = {s for n in notes for s in n["symbols"]}
        assert {"sent", "opened", "clicked"} <= seen, notes
        if os.environ.get("MAILTRACK_SCREENSHOTS") and Path("/usr/bin/chromium").exists():
            screenshots(base, key, email, password)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert not any("Traceback" in line for line in err), "".join(err)


def screenshots(base: str, key: str, email: str, password: str) -> None:
    """The README's pictures of the main pages, from a live demo."""
    from playwright.sync_api import sync_playwright

    from tests.test_browser import ARGS

    time.sleep(32)  # let the demo's 30 s queue age run out, so deferred → soft bounce shows too
    docs = REPO / "docs"
    docs.mkdir(exist_ok=True)
    listed = _get(f"{base}/api/v1/emails?source_reference=T-1043&source_type=task_sheet", key)["emails"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=ARGS, headless=True)
        page = browser.new_page(viewport={"width": 1360, "height": 860})
        page.goto(f"{base}/login")
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        page.click("button[type=submit]")
        page.wait_for_url("**/emails")
        shots = [("emails", "/emails", False), ("email", f"/emails/{listed[0]['id']}", True),
                 ("task-notes", "/tasks/T-1042", True), ("settings", "/settings", False),
                 ("suppressions", "/suppressions", False), ("dashboard", "/dashboard", False)]
        for name, path, full in shots:
            page.goto(base + path)
            page.screenshot(path=str(docs / f"ui-{name}.png"), full_page=full)
        phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True,
                                    device_scale_factor=2, storage_state=page.context.storage_state()).new_page()
        for name, path in (("phone-emails", "/emails"), ("phone-email", f"/emails/{listed[0]['id']}")):
            phone.goto(base + path)
            phone.screenshot(path=str(docs / f"ui-{name}.png"))
        browser.close()
