"""`mailtrack queue …`, `mailtrack purge`, `mailtrack backup` / `restore`: the operator's commands."""

from __future__ import annotations

import json
import time
from typing import Any

import click

from ..store import queue


def _store(ctx: click.Context) -> Any:
    from ..cli import _config, _store

    return _store(_config(ctx))


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"


def _selection(recipient_id: str | None, destination: str | None, every: bool) -> queue.Selection:
    try:
        return queue.Selection(recipient_id, destination, every)
    except ValueError as e:
        raise click.UsageError(f"{e} (e.g. `RECIPIENT_ID`, `--destination example.com` or `--all`)") from e


@click.group("queue")
def queue_group() -> None:
    """See and steer the delivery queue (like postqueue / postsuper)."""


@queue_group.command("list")
@click.option("--destination", help="Only this recipient domain.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def queue_list(ctx: click.Context, destination: str | None, as_json: bool) -> None:
    """Queued recipients by destination and state (spooled, deferred, held, in_flight), oldest age."""
    from ..ops.routes import queue_view

    store = _store(ctx)
    with store.read() as conn:
        rows = queue.summary(conn, time.time(), destination)
        holds = queue.holds(conn)
    if as_json:
        click.echo(json.dumps(queue_view(rows, holds), indent=2))
        return
    if not rows:
        click.echo("the queue is empty")
    else:
        click.echo(f"{'destination':<40} {'state':<10} {'count':>8} {'oldest':>8}")
        for r in rows:
            click.echo(f"{r.destination:<40} {r.state:<10} {r.count:>8} {_age(r.oldest_age):>8}")
    for dest, at, why in holds:
        click.echo(f"on hold: {dest} since {time.strftime('%Y-%m-%d %H:%M', time.gmtime(at))} UTC"
                   + (f" ({why})" if why else ""))


@queue_group.command("hold")
@click.argument("destination")
@click.option("--reason", help="Shown in `queue list`.")
@click.pass_context
def queue_hold(ctx: click.Context, destination: str, reason: str | None) -> None:
    """Send nothing to DESTINATION (a recipient domain) until released."""
    store = _store(ctx)
    with store.write() as conn:
        new = queue.hold(conn, destination, time.time(), reason)
    click.echo(f"{destination.lower()} {'is now' if new else 'was already'} on hold")


@queue_group.command("release")
@click.argument("destination")
@click.pass_context
def queue_release(ctx: click.Context, destination: str) -> None:
    """Lift the hold on DESTINATION; what waited for it is due at once."""
    store = _store(ctx)
    with store.write() as conn:
        n = queue.release(conn, destination, time.time())
    if n is None:
        raise click.ClickException(f"{destination} is not on hold (see `mailtrack queue list`)")
    click.echo(f"released {destination.lower()}: {n} recipients due now")


_target = [
    click.argument("recipient_id", required=False),
    click.option("--destination", help="Every queued recipient of this domain."),
    click.option("--all", "every", is_flag=True, help="Every queued recipient."),
]


def _with_target(f: Any) -> Any:
    for deco in reversed(_target):
        f = deco(f)
    return f


@queue_group.command("retry")
@_with_target
@click.pass_context
def queue_retry(ctx: click.Context, recipient_id: str | None, destination: str | None, every: bool) -> None:
    """Make queued recipients due now (one RECIPIENT_ID, --destination D or --all)."""
    sel = _selection(recipient_id, destination, every)
    store = _store(ctx)
    with store.write() as conn:
        n = queue.retry(conn, sel, time.time())
    click.echo(f"{n} recipients due now")


@queue_group.command("drop")
@_with_target
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@click.pass_context
def queue_drop(ctx: click.Context, recipient_id: str | None, destination: str | None, every: bool,
               yes: bool) -> None:
    """End queued recipients as soft bounces "removed by operator" (recorded as events)."""
    from . import metrics

    sel = _selection(recipient_id, destination, every)
    if not yes and recipient_id is None:
        click.confirm(f"drop every queued recipient {'of ' + destination if destination else ''}?".replace("  ", " "),
                      abort=True)
    store = _store(ctx)
    with store.write() as conn:
        dropped, busy = queue.drop(conn, sel, time.time())
    metrics.status_changed("soft_bounce", dropped)
    click.echo(f"dropped {dropped} recipients" + (f"; {busy} in flight were left to finish" if busy else ""))
