"""Run the service: HTTP (API, UI, tracking), the delivery worker and the inbound SMTP server in one process.

HTTP has an event loop of its own, in its own thread: a pixel or a click never queues behind the
delivery worker's SMTP callbacks or the inbound server; they share only the GIL.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import signal
import threading
from typing import Any

import uvicorn

from .app import create_app
from .config import Config
from .store.db import Store, open_store
from .tracking.protocol import protocol_class
from .tracking.routes import warm_up

log = logging.getLogger("mailtrack")
ROLES = ("api", "worker", "inbound", "submission")


GC_THRESHOLD = (10_000, 20, 20)


def settle_gc() -> None:
    """Once started: everything loaded so far lives as long as the process, so it is kept out of the
    collector's scans, which otherwise walk every module and class on each full collection (latency
    spikes). And the youngest generation is collected after 10,000 net new objects rather than 700:
    a server holds thousands of short-lived ones at a time (a webhook queue, requests in flight),
    so at 700 it collected every few milliseconds for little (bench/webhooks.py: 0.25 s of 7 for
    30,000 events; a few milliseconds at 10,000). Cycles are still collected, only less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLD)


async def _warm_up(app: Any) -> None:
    """Start the tracking writer before the first pixel load instead of during it."""
    try:
        await asyncio.to_thread(warm_up, app)
    except Exception:  # the first hit will try again; serving must not depend on this
        log.exception("could not start the tracking writer ahead of time")


async def _serve_http(server: uvicorn.Server) -> None:
    """Run uvicorn on its own loop in its own thread until it stops; an error if it never started."""
    thread = threading.Thread(target=server.run, name="mailtrack-http", daemon=True)
    thread.start()
    await asyncio.to_thread(thread.join)
    if not server.started:
        raise SystemExit(f"HTTP server could not start on {server.config.host}:{server.config.port} (see above)")


def http_server(app: Any, host: str, port: int) -> uvicorn.Server:
    """uvicorn for the app, with pixel and click answered inside its HTTP protocol (tracking/protocol.py)."""
    if app.middleware_stack is None:  # now: building it makes the tracking fast path (tracking/routes.py)
        app.middleware_stack = app.build_middleware_stack()
    return uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False,
                                         lifespan="off", http=protocol_class(getattr(app.state, "tracking", None))))


def setup_logging(level: str, log_format: str = "text") -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)  # start-up noise
    from .ops.logs import configure

    configure(log_format)  # request ids on records; JSON lines when asked


async def run_roles(config: Config, roles: tuple[str, ...], store: Store | None = None,
                    ready: asyncio.Event | None = None) -> None:
    """Run the chosen roles until cancelled or SIGINT/SIGTERM."""
    store = store or open_store(config.database_url)
    tasks: list[asyncio.Task[Any]] = []
    stoppers: list[Any] = []
    worker = None
    inbound = None
    if "worker" in roles:
        from .delivery.worker import Worker

        worker = Worker(config, store)
        tasks.append(asyncio.create_task(worker.run(), name="worker"))
        stoppers.append(worker.stop)
        from .domains.recheck import recheck_loop

        recheck = asyncio.create_task(recheck_loop(config, store), name="domain-recheck")

        async def stop_recheck() -> None:
            recheck.cancel()

        stoppers.append(stop_recheck)
    if "worker" in roles and config.webhooks:
        from .webhooks.dispatcher import Dispatcher

        dispatcher = Dispatcher(config, store)
        tasks.append(asyncio.create_task(dispatcher.run(), name="webhooks"))
        stoppers.append(dispatcher.stop)
    if "worker" in roles and config.retention > 0:
        from .ops.retention import DailyPurge

        purger = DailyPurge(config, store)
        tasks.append(asyncio.create_task(purger.run(), name="retention"))
        stoppers.append(purger.stop)
    if "inbound" in roles:
        from .inbound.server import InboundServer

        inbound = InboundServer(config, store)
        await inbound.start()
        log.info("inbound SMTP on %s:%s", *config.inbound_smtp)
        stoppers.append(inbound.stop)
    if "submission" in roles:
        from .submission.server import SubmissionServer

        submission = SubmissionServer(config, store, on_spooled=worker.wake_threadsafe if worker else None)
        await submission.start()
        stoppers.append(submission.stop)
    server = None
    if "api" in roles:
        app = create_app(config, store, on_spooled=worker.wake_threadsafe if worker else None)
        app.state.worker = worker  # for /readyz
        app.state.inbound = inbound if "inbound" in roles else None
        host, port = config.http
        server = http_server(app, host, port)
        tasks.append(asyncio.create_task(_serve_http(server), name="http"))
        await _warm_up(app)
        log.info("HTTP on http://%s:%s", host, port)
    settle_gc()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    if ready is not None:
        ready.set()
    try:
        waiter = asyncio.create_task(stop.wait())
        done, _ = await asyncio.wait([waiter, *tasks], return_when=asyncio.FIRST_COMPLETED)
        for t in done:
            if t is not waiter and t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
    finally:
        if server is not None:
            server.should_exit = True
        for s in stoppers:
            await s()
        for t in tasks:
            if not t.done():
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(t, timeout=5)
        store.dispose()
