"""The hit writer process: restarted when killed (held hits resent), gone with its parent, closed to strangers."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from sqlalchemy import select

from mailtrack import tokens
from mailtrack.store.db import open_store
from mailtrack.store.hits import Hit
from mailtrack.store.schema import recipients
from mailtrack.tracking.fastpath import GIF
from mailtrack.tracking.recorder import Recorder

from .conftest import Api
from .test_tracking_recorder import UA, _opens, _recipient


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited all the same
    with open(f"/proc/{pid}/stat") as f:
        return f.read().rsplit(")", 1)[1].split()[0] != "Z"


async def _until(check: Callable[[], bool], seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check() and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


async def test_killed_writer_is_restarted_and_its_held_hits_are_resent(api: Api) -> None:
    recorder = Recorder(api.store)
    api.app.state.tracking_recorder = recorder
    rid = _recipient(api)
    pixel = f"/o/{tokens.open_token(api.config.secret_key, rid)}.gif"
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=api.app), base_url="http://t") as client:
        assert (await client.get(pixel, headers={"User-Agent": UA})).content == GIF
        assert await asyncio.to_thread(recorder.flush, 30.0)
        first = recorder.writer_pid
        assert first is not None and _opens(api.store, rid) == (1, 1, 1)
        with api.store.write() as conn:  # the writer waits for this lock (SQLite) / row (PostgreSQL)
            conn.execute(select(recipients.c.id).where(recipients.c.id == rid).with_for_update())
            got = await asyncio.gather(*(client.get(pixel, headers={"User-Agent": UA}) for _ in range(10)))
            assert all(r.status_code == 200 and r.content == GIF for r in got)  # answered, not yet written
            os.kill(first, signal.SIGKILL)  # with the ten hits uncommitted
            await _until(lambda: recorder.writer_pid not in (None, first))
            assert recorder.writer_pid not in (None, first)
        assert await asyncio.to_thread(recorder.flush, 30.0)
        assert _opens(api.store, rid) == (11, 11, 11)  # resent to the new writer, written once
        assert (await client.get(pixel, headers={"User-Agent": UA})).status_code == 200
        assert await asyncio.to_thread(recorder.flush, 30.0)
        assert _opens(api.store, rid) == (12, 12, 12)
    recorder.close()
    assert not _alive(first)


async def test_close_stops_the_writer(api: Api) -> None:
    rid = _recipient(api)
    recorder = Recorder(api.store)
    assert await recorder.record(Hit(rid, "opened", time.time(), "203.0.113.9", UA, "human"), 30.0)
    pid = recorder.writer_pid
    assert pid is not None and _alive(pid)
    recorder.close()
    assert not _alive(pid)
    assert _opens(api.store, rid) == (1, 1, 1)


SCRIPT = textwrap.dedent("""
    import asyncio, sys, time
    from mailtrack.store.db import open_store
    from mailtrack.store.hits import Hit
    from mailtrack.tracking.recorder import Recorder

    async def main():
        recorder = Recorder(open_store(sys.argv[1]))
        await recorder.record(Hit("ab12", "opened", time.time(), None, None, "unknown"), 30.0)
        print(recorder.writer_pid, recorder.url, flush=True)
        time.sleep(60)

    asyncio.run(main())
""")


def test_writer_exits_when_its_parent_is_killed(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path}/t.db").dispose()
    parent = subprocess.Popen([sys.executable, "-c", SCRIPT, f"sqlite:///{tmp_path}/t.db"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        pid = int(parent.stdout.readline().split()[0])
        assert _alive(pid)
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 30
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


async def test_another_process_cannot_feed_the_writer(api: Api) -> None:
    """The socket is abstract (no file permissions), so the writer checks the peer's pid."""
    rid = _recipient(api)
    recorder = Recorder(api.store)
    assert await recorder.record(Hit(rid, "opened", time.time(), None, UA, "human"), 30.0)
    address = recorder.ensure_writer()
    marker = Path(os.environ.get("TMPDIR", "/tmp")) / f"mailtrack-pwned-{os.getpid()}"
    evil = textwrap.dedent(f"""
        import os, pickle, socket
        class P:
            def __reduce__(self):
                return (os.system, ("touch {marker}",))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect({address!r})
        body = pickle.dumps((1, [P()]))
        try:
            s.sendall(len(body).to_bytes(4, "big") + body)
            print("answered" if s.recv(100) else "closed")
        except ConnectionError:
            print("closed")
    """)
    out = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", evil], capture_output=True, text=True,
                                  timeout=30)
    assert out.stdout.strip() == "closed", out.stderr
    assert not marker.exists()
    # and the writer still serves its parent
    assert await recorder.record(Hit(rid, "opened", time.time(), None, UA, "human"), 30.0)
    assert _opens(api.store, rid) == (2, 2, 2)
    recorder.close()
