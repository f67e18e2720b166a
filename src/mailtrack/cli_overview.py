"""`mailtrack status` without an email: the queue, and the provider groups paused by a rate-limit reply."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click


def overview(ctx: click.Context) -> None:
    from .clictx import cli_config, cli_store
    from .store import pauses
    from .store.delivery import pending_count

    store = cli_store(cli_config(ctx))
    with store.read() as conn:
        queued = pending_count(conn)
        paused = pauses.active(conn)
    click.echo(f"queue: {queued} recipient(s) waiting for delivery (spooled or deferred)")
    if not paused:
        click.echo("providers: none paused")
        return
    click.echo("providers paused after a rate-limit reply (their mail waits; nothing is lost):")
    now = time.time()
    for p in paused:
        until = datetime.fromtimestamp(p.until, UTC).strftime("%H:%M:%S UTC")
        click.echo(f"  {p.group:<30} until {until} ({p.until - now:.0f} s)  {p.reason[:120]}")
