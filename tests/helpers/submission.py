"""A running submission server with the delivery worker and the simulator behind it (for the submission tests)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mailtrack.config import Config
from mailtrack.delivery.worker import Worker
from mailtrack.simulator import Simulator
from mailtrack.store import accounts, queries
from mailtrack.store.db import Store
from mailtrack.submission.server import SubmissionServer
from tests.conftest import make_config

SIM = "sim.mailtrack.test"


def submission_config(tmp_path: Path, **over: Any) -> Config:
    values: dict[str, Any] = {"submission_smtp": "127.0.0.1:0", "retry_schedule": "0.2s", "smtp_timeout": "5s",
                              "public_url": "http://track.test"}
    values.update(over)
    return make_config(tmp_path, **values)


@dataclass
class Running:
    server: SubmissionServer
    sim: Simulator
    store: Store
    account: int
    key: str

    @property
    def port(self) -> int:
        assert self.server.port is not None
        return self.server.port

    def view(self, email_id: str) -> dict[str, Any]:
        with self.store.read() as conn:
            return queries.get_email(conn, self.account, email_id)

    async def wait_statuses(self, email_id: str, done: Callable[[dict[str, str]], bool],
                            timeout: float = 20.0) -> dict[str, str]:
        """Poll the email's view until ``done(address → status)`` holds."""
        deadline = time.monotonic() + timeout
        while True:
            view = await asyncio.to_thread(self.view, email_id)
            statuses = {r["address"]: r["status"] for r in view["recipients"]}
            if done(statuses):
                return statuses
            assert time.monotonic() < deadline, f"statuses did not settle: {statuses}"
            await asyncio.sleep(0.05)


def settled(statuses: dict[str, str]) -> bool:
    return bool(statuses) and all(s not in ("creating", "spooled", "deferred") for s in statuses.values())


@contextlib.asynccontextmanager
async def running(tmp_path: Path, store: Store, *, worker: bool = True, **over: Any) -> AsyncIterator[Running]:
    """Simulator on port 0, the worker routing SIM to it, the submission server on port 0."""
    extra = {k: over.pop(k) for k in ("limits", "guard") if k in over}
    with store.write() as conn:
        account = accounts.get_or_create_account(conn, "acme")
        key = accounts.create_api_key(conn, account)
    async with Simulator(domain=SIM, followup_delay=0.05) as sim:
        config = submission_config(tmp_path, transport_map=f"{SIM}=127.0.0.1:{sim.port}", **over)
        w = Worker(config, store, poll_interval=0.05) if worker else None
        task = asyncio.create_task(w.run()) if w else None
        server = SubmissionServer(config, store, on_spooled=w.wake_threadsafe if w else None,
                                  var_dir=tmp_path / "var", **extra)
        await server.start()
        try:
            yield Running(server, sim, store, account, key)
        finally:
            await server.stop()
            if w is not None and task is not None:
                await w.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await asyncio.wait_for(task, 15)

