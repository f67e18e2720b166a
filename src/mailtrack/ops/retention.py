"""The automatic retention purge: once a day, in small chunks, inside the worker role."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from ..config import Config
from ..store import retention
from ..store.db import Store

log = logging.getLogger("mailtrack.retention")


class DailyPurge:
    """``await run()`` until ``await stop()``: purges what is older than MAILTRACK_RETENTION every day."""

    def __init__(self, config: Config, store: Store, *, first_after: float = 300.0, every: float = 86400.0) -> None:
        self.config = config
        self.store = store
        self.first_after = first_after  # not in the middle of start-up
        self.every = every
        self._stop = asyncio.Event()
        self.runs = 0

    async def run(self) -> None:
        delay = self.first_after
        while not await self._wait(delay):
            started = time.monotonic()
            try:
                cutoff = time.time() - self.config.retention
                got = await asyncio.to_thread(retention.purge, self.store, cutoff, should_stop=self._stop.is_set)
                self.runs += 1
                if got.emails:
                    log.info("retention: purged %d emails, %d recipients, %d events older than %.0f days in %.1f s",
                             got.emails, got.recipients, got.events, self.config.retention / 86400, got.seconds)
            except Exception:  # the next run tries again
                log.exception("retention purge failed")
            delay = max(self.every - (time.monotonic() - started), 60.0)

    async def _wait(self, delay: float) -> bool:
        """True when stopped."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)
        return self._stop.is_set()

    async def stop(self) -> None:
        self._stop.set()
