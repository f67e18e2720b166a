"""`mailtrack bounce list / show`: the operator's view of received reports, orphans included."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mailtrack.cli import main
from mailtrack.store import inbound
from mailtrack.store.db import open_store


def test_list_and_show_orphans_and_raw(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/db.sqlite"
    store = open_store(url)
    with store.write() as conn:
        orphan = inbound.save(conn, "<>", ["bounces+nope@b.example"], b"Subject: who?\r\n\r\nno idea\r\n")
        inbound.mark(conn, orphan, "orphan", kind="bounce", summary={"unmatched": ["ghost@example.test"]})
        applied = inbound.save(conn, "<>", ["fbl@b.example"], b"Subject: arf\r\n\r\n")
        inbound.mark(conn, applied, "applied", kind="complaint")
    store.dispose()
    env = {"MAILTRACK_DATABASE_URL": url, "MAILTRACK_SECRET_KEY": "k"}
    run = CliRunner()

    r = run.invoke(main, ["bounce", "list", "--state", "orphan", "--json"], env=env)
    assert r.exit_code == 0, r.output
    rows = [json.loads(line) for line in r.output.splitlines()]
    assert [(x["id"], x["state"], x["summary"]["unmatched"]) for x in rows] == [(orphan, "orphan", ["ghost@example.test"])]

    r = run.invoke(main, ["bounce", "list"], env=env)
    assert r.exit_code == 0 and "ghost@example.test" in r.output and "complaint" in r.output

    r = run.invoke(main, ["bounce", "show", str(orphan), "--raw"], env=env)
    assert r.exit_code == 0 and r.stdout_bytes == b"Subject: who?\r\n\r\nno idea\r\n"

    r = run.invoke(main, ["bounce", "show", "999"], env=env)
    assert r.exit_code != 0 and "no received message 999" in r.output and "Traceback" not in r.output
