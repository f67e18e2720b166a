"""Run a delivery worker until a condition holds (polled off the loop, generous deadline)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from mailtrack.delivery.worker import Worker


async def run_until(worker: Worker, done: Callable[[], bool], timeout: float = 30.0) -> None:
    task = asyncio.create_task(worker.run())
    try:
        deadline = time.monotonic() + timeout
        while not await asyncio.to_thread(done):
            assert not task.done(), f"worker ended early: {task.exception() if task.done() else ''}"
            assert time.monotonic() < deadline, "delivery did not finish in time"
            await asyncio.sleep(0.05)
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 20)
