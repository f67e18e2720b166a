"""`mailtrack demo` as a person runs it: the URL first, piped output line by line, a busy port refused with
a message, MAILTRACK_DATABASE_URL and --sim-port honoured, Ctrl-C without a traceback."""

from __future__ import annotations

import os
import queue
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

ENV = {**os.environ, "MAILTRACK_SECRET_KEY": "demo-cli-test", "MAILTRACK_LOG_LEVEL": "warning"}
ENV.pop("MAILTRACK_DATABASE_URL", None)


def _start(args: list[str], cwd: Path, **env: str) -> tuple[subprocess.Popen[str], queue.Queue[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "mailtrack.cli", "demo", *args], cwd=cwd, env={**ENV, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return proc, lines


def _until(lines: queue.Queue[str], proc: subprocess.Popen[str], text: str, seen: list[str]) -> None:
    deadline = time.monotonic() + 60
    while not any(text in s for s in seen):
        assert time.monotonic() < deadline and proc.poll() is None, f"no {text!r} in {seen}"
        try:
            seen.append(lines.get(timeout=1))
        except queue.Empty:
            continue


def _stop(proc: subprocess.Popen[str]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.stderr is not None
    return proc.returncode, proc.stderr.read()


def _free() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_busy_http_port_is_refused_with_a_message(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([sys.executable, "-m", "mailtrack.cli", "demo", "--http", f"127.0.0.1:{port}", "--db",
                            str(tmp_path / "d.db")], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and r.stdout == ""
    assert f"cannot use 127.0.0.1:{port} for the web UI" in r.stderr and "--http" in r.stderr
    assert "Traceback" not in r.stderr and not (tmp_path / "d.db").exists()


def test_database_url_sim_port_url_first_and_quiet_ctrl_c(tmp_path: Path) -> None:
    sim_port = _free()
    db = tmp_path / "from-env.db"
    proc, lines = _start(["--http", "127.0.0.1:0", "--sim-port", str(sim_port)], tmp_path,
                         MAILTRACK_DATABASE_URL=f"sqlite:///{db}")
    seen: list[str] = []
    _until(lines, proc, "Sign in:", seen)  # arrives through a pipe while the demo runs
    assert seen[0].startswith("mailtrack demo starting: open http://127.0.0.1:")  # the address comes first
    assert f"simulator on 127.0.0.1:{sim_port}" in "".join(seen)
    assert "MAILTRACK_DATABASE_URL" in "".join(seen)
    code, err = _stop(proc)
    assert code == 0 and "Traceback" not in err and "KeyboardInterrupt" not in err, err
    with sqlite3.connect(db) as conn:  # the demo used the configured database, and kept it
        assert conn.execute("select count(*) from users where email = 'demo@mailtrack.test'").fetchone() == (1,)
    assert not (tmp_path / "var").exists()


def test_ctrl_c_during_start_up_is_quiet(tmp_path: Path) -> None:
    proc, lines = _start(["--http", "127.0.0.1:0", "--db", str(tmp_path / "d.db")], tmp_path)
    seen: list[str] = []
    _until(lines, proc, "demo starting", seen)
    code, err = _stop(proc)
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
    assert code == 0 and seen[-1].startswith("mailtrack demo starting"), (code, err)
