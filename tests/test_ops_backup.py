"""`mailtrack backup` while the service takes submissions; `mailtrack restore`; the service serves from it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from mailtrack.cli import main

MAILTRACK = str(Path(sys.executable).parent / "mailtrack")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def env_for(db: Path) -> dict[str, str]:
    return {**os.environ, "MAILTRACK_DATABASE_URL": f"sqlite:///{db}", "MAILTRACK_SECRET_KEY": "test-secret",
            "MAILTRACK_WORKER": "false", "MAILTRACK_INBOUND": "false", "MAILTRACK_LOG_LEVEL": "warning"}


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    with log.open("ab") as out:
        proc = subprocess.Popen([MAILTRACK, "serve"], env={**env, "MAILTRACK_HTTP": f"127.0.0.1:{port}"},
                                stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        assert proc.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the service did not start in 60 s"
        time.sleep(0.1)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([MAILTRACK, *args], env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.slow
def test_backup_under_load_restores_and_serves(tmp_path: Path) -> None:
    live_env = env_for(tmp_path / "live.db")
    key = run(live_env, "apikey", "create", "--account", "acme").stdout.strip().splitlines()[-1]
    proc, url = serve(live_env, tmp_path / "live.log")
    accepted: list[str] = []
    stop_load = threading.Event()
    errors: list[str] = []

    def load() -> None:  # batches of 20 emails, as fast as the service takes them
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
            i = 0
            while not stop_load.is_set():
                body = {"emails": [{"from": "ops@acme.test", "to": [f"u{i}-{j}@example.test"], "subject": f"S{i}",
                                    "text": "hello " * 200} for j in range(20)]}
                r = c.post("/api/v1/emails/batch", json=body)
                if r.status_code != 202:
                    errors.append(r.text)
                    return
                accepted.extend(e["id"] for e in r.json()["emails"])
                i += 1

    loader = threading.Thread(target=load)
    loader.start()
    try:
        deadline = time.monotonic() + 60
        while len(accepted) < 200:
            assert not errors, errors
            assert time.monotonic() < deadline, "the load never got going"
            time.sleep(0.05)
        before = list(accepted)  # committed before the backup started: must all be in it
        backup = tmp_path / "backup.db"
        out = run(live_env, "backup", str(backup))
        assert out.returncode == 0, out.stderr
        assert "backed up to" in out.stdout
        refused = run(live_env, "restore", str(backup))
        assert refused.returncode != 0 and "stop it first" in refused.stderr + refused.stdout
    finally:
        stop_load.set()
        loader.join(60)
        stop(proc)
    assert not errors, errors
    assert run(live_env, "backup", str(backup)).returncode != 0  # never overwrites a file

    new_env = env_for(tmp_path / "restored" / "mailtrack.db")
    out = run(new_env, "restore", str(backup))
    assert out.returncode == 0, out.stderr
    proc, url = serve(new_env, tmp_path / "restored.log")
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            for eid in [*before[::max(1, len(before) // 25)], before[-1]]:
                r = c.get(f"/api/v1/emails/{eid}")
                assert r.status_code == 200, (eid, r.text)
                assert r.json()["recipients"][0]["status"] == "spooled"
            listed = c.get("/api/v1/emails", params={"limit": 1}).json()
            assert listed["emails"]  # the list page reads from the restored file too
    finally:
        stop(proc)


def test_backup_refuses_postgresql_and_names_pg_dump(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILTRACK_DATABASE_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
    monkeypatch.setenv("MAILTRACK_SECRET_KEY", "test-secret")
    out = CliRunner().invoke(main, ["backup", str(tmp_path / "x.db")])
    assert out.exit_code != 0 and "pg_dump" in out.output


def test_restore_refuses_a_file_that_is_not_a_mailtrack_database(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILTRACK_DATABASE_URL", f"sqlite:///{tmp_path}/m.db")
    monkeypatch.setenv("MAILTRACK_SECRET_KEY", "test-secret")
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 100)
    out = CliRunner().invoke(main, ["restore", str(junk)])
    assert out.exit_code != 0 and "not a mailtrack SQLite database" in out.output
    assert not (tmp_path / "m.db").exists()
