"""End to end: worker → simulator (accepts, then reports back by SMTP) → inbound server → recipient status."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

import pytest

from mailtrack.simulator import Simulator
from mailtrack.store import accounts, queries, suppressions
from mailtrack.store.db import Store
from mailtrack.store.submit import NewEmail, NewRecipient, submit
from tests.test_inbound_payloads import inbound_config, running

try:
    from mailtrack.delivery.worker import Worker
except ImportError as e:  # pragma: no cover - only while the delivery worker is being written
    pytest.skip(f"mailtrack.delivery.worker cannot be imported yet: {e}", allow_module_level=True)

SIM = "sim.mailtrack.test"


def _view(store: Store, acct: int, eid: str) -> dict[str, Any]:
    with store.read() as conn:
        return queries.get_email(conn, acct, eid)


async def test_simulator_reports_reach_the_recipients(any_store: Store, tmp_path: Path) -> None:
    config = inbound_config(tmp_path, retry_schedule="1s")
    bounced, complained, ooto = (f"{p}@{SIM}" for p in ("late-bounce", "complaint", "ooto"))
    async with running(config, any_store) as server:
        async with Simulator(domain=SIM, report_to=("127.0.0.1", server.port), followup_delay=0.05) as sim:
            cfg = config.replace(transport_map={SIM: f"127.0.0.1:{sim.port}"})
            with any_store.write() as conn:
                acct = accounts.get_or_create_account(conn, "acme")
                [(eid, _)] = submit(conn, acct, [NewEmail(
                    from_addr="ops@acme.test", subject="Invoice 1001", text="Hello",
                    recipients=[NewRecipient("", a, "to") for a in (bounced, complained, ooto)],
                )])
            worker = Worker(cfg, any_store, poll_interval=0.05)
            task = asyncio.create_task(worker.run())
            try:
                deadline = asyncio.get_running_loop().time() + 20
                while not {"hard_bounce", "complained", "auto_reply"} <= {
                    e["type"] for e in _view(any_store, acct, eid)["timeline"]
                }:
                    assert asyncio.get_running_loop().time() < deadline, _view(any_store, acct, eid)
                    await asyncio.sleep(0.05)
            finally:
                await worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
    body = _view(any_store, acct, eid)
    by_addr = {r["address"]: r for r in body["recipients"]}
    timeline: dict[str, list[str]] = {}
    for e in body["timeline"]:
        timeline.setdefault(e["address"], []).append(e["type"])
    assert by_addr[bounced]["status"] == "hard_bounce"
    assert timeline[bounced][-2:] == ["sent", "hard_bounce"]
    assert by_addr[complained]["status"] == "sent" and by_addr[complained]["complained"] is True
    assert timeline[complained][-2:] == ["sent", "complained"]
    assert by_addr[ooto]["status"] == "sent" and timeline[ooto][-2:] == ["sent", "auto_reply"]
    with any_store.read() as conn:
        rows, _ = suppressions.search(conn, acct)
    assert {r["address"]: r["source"] for r in rows} == {bounced: "hard_bounce", complained: "complaint"}
