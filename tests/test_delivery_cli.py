"""`mailtrack send` / `mailtrack status` against a real SQLite file, delivered by a real worker to the simulator."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailtrack.cli import main
from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store.db import open_store
from tests.helpers.worker import run_until
from tests.test_delivery import a, all_final, sim_config


def env_for(tmp_path: Path, port: int = 1) -> dict[str, str]:
    return {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/mailtrack.db", "MAILTRACK_SECRET_KEY": "test-secret",
            "MAILTRACK_TRANSPORT_MAP": f"sim.mailtrack.test=127.0.0.1:{port}"}


def cli(tmp_path: Path, *args: str, port: int = 1) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=env_for(tmp_path, port))
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    return result.exit_code, result.output


async def test_send_then_status(tmp_path: Path) -> None:
    async with Simulator() as sim:
        assert cli(tmp_path, "apikey", "create", "--account", "acme")[0] == 0
        body = tmp_path / "body.html"
        body.write_text("<p>Your invoice</p>", encoding="utf-8")
        code, out = cli(tmp_path, "send", "--account", "acme", "--from", "Acme <ops@acme.test>",
                        "--to", f"{a('success')}, {a('bounce')}", "--bcc", a("success+archive"),
                        "--subject", "Invoice I-7", "--text", "Hello", "--html-file", str(body),
                        "--source-type", "invoice", "--reference", "I-7", port=sim.port)
        assert code == 0, out
        m = re.search(r"^email ([0-9a-f]+)$", out, re.M)
        assert m is not None
        eid = m.group(1)
        assert f"bcc  {a('success+archive')}  spooled" in out

        store = open_store(f"sqlite:///{tmp_path}/mailtrack.db")
        try:
            await run_until(Worker(sim_config(tmp_path, sim.port), store), all_final(store))
        finally:
            store.dispose()
        assert len(sim.state.messages) == 2

    code, out = cli(tmp_path, "status", eid)
    assert code == 0, out
    lines = {line.split()[2] if len(line.split()) > 2 else "": line for line in out.splitlines()[2:]}
    assert lines[a("success")].startswith("✓") and "Sent" in lines[a("success")]
    assert lines[a("bounce")].startswith("✗") and "5.1.1" in lines[a("bounce")]
    assert "bcc" in lines[a("success+archive")]
    assert "0 (0 human)" in lines[a("success")]
    code, out2 = cli(tmp_path, "status", eid, "--account", "acme")
    assert code == 0 and out2 == out


@pytest.mark.parametrize(("args", "message"), [
    (["--account", "nobody"], "no account named 'nobody'"),
    (["--from", "not-an-address"], "from: from 'not-an-address' is not an email address"),
    (["--to", "x@"], "to[0]"),
    (["--text", None], "give a body"),
    (["--text-file", "/no/such/file"], "cannot read /no/such/file"),
    (["--reference", "T-1"], "--reference needs --source-type"),
    (["--client", "ghost"], "no client 'ghost'"),
])
def test_send_errors_are_clear(tmp_path: Path, args: list[str | None], message: str) -> None:
    assert cli(tmp_path, "apikey", "create", "--account", "acme")[0] == 0
    opts: dict[str, str | None] = {"--account": "acme", "--from": "ops@acme.test", "--to": "c@example.test",
                                   "--subject": "s", "--text": "t"}
    for i in range(0, len(args), 2):
        opts[str(args[i])] = args[i + 1]
    if "--text-file" in opts:
        opts.pop("--text")
    argv = ["send"] + [x for k, v in opts.items() if v is not None for x in (k, v)]
    code, out = cli(tmp_path, *argv)
    assert code != 0
    assert message in out and "Traceback" not in out


def test_status_errors_and_help(tmp_path: Path) -> None:
    assert cli(tmp_path, "apikey", "create", "--account", "acme")[0] == 0
    code, out = cli(tmp_path, "status", "0123456789abcdef")
    assert code != 0 and "no email '0123456789abcdef'" in out
    code, out = cli(tmp_path, "status", "0123456789abcdef", "--account", "acme")
    assert code != 0 and "no email" in out
    code, out = cli(tmp_path, "send", "--help")
    assert code == 0 and "--bcc" in out and "Example" in out
    code, out = cli(tmp_path, "status", "--help")
    assert code == 0 and "✓ sent" in out
