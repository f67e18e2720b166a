"""The periodic re-check of every sending domain's records (``MAILTRACK_DOMAIN_RECHECK``), run next to
the delivery worker: a key whose record appeared starts signing, one whose record vanished stops, and a
rotated-out selector is retired once its grace period is over."""

from __future__ import annotations

import asyncio
import logging

from ..config import Config
from ..store.db import Store
from . import service

log = logging.getLogger("mailtrack.domains")


async def recheck_loop(config: Config, store: Store) -> None:
    while True:
        await asyncio.sleep(max(config.domain_recheck, 1.0))
        try:
            n = await asyncio.to_thread(service.recheck_all, store, config)
            log.debug("re-checked %d sending domain(s)", n)
        except Exception:  # DNS or the store is down: next round
            log.exception("re-checking the sending domains failed")
