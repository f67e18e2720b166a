"""The HTTP application, assembled in one place: the JSON API, tracking, inbound reports, operations, web UI.

Every part is imported here directly: a part that fails to import stops the service at start with
its error, never a quieter service. The parts import downward only (shared request dependencies
live in ``mailtrack.deps``), so this module is the one place that knows them all.
"""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from .api.app import build_api
from .config import Config
from .inbound.routes import mount as mount_inbound
from .ops.routes import mount as mount_ops
from .store.db import Store
from .tracking.routes import mount as mount_tracking
from .web.routes import mount as mount_web


def create_app(config: Config, store: Store, *, on_spooled: Callable[[], None] | None = None) -> FastAPI:
    """The whole HTTP surface. ``on_spooled`` wakes an in-process delivery worker."""
    app = build_api(config, store, on_spooled=on_spooled)
    mount_ops(app)  # /healthz, /readyz, /metrics, the admin queue API
    mount_tracking(app)  # /o/ and /c/ before any other middleware
    mount_inbound(app)
    mount_web(app)
    return app
