"""`mailtrack queue …`, `mailtrack purge`, `mailtrack backup` / `restore`: the operator's commands."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import click

from ..clictx import cli_config, cli_store
from ..store import queue


def _store(ctx: click.Context) -> Any:

    return cli_store(cli_config(ctx))


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

    sel = _selection(recipient_id, destination, every)
    if not yes and recipient_id is None:
        click.confirm(f"drop every queued recipient {'of ' + destination if destination else ''}?".replace("  ", " "),
                      abort=True)
    store = _store(ctx)
    with store.write() as conn:
        dropped, busy = queue.drop(conn, sel, time.time())
    click.echo(f"dropped {dropped} recipients" + (f"; {busy} in flight were left to finish" if busy else ""))


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup_command(ctx: click.Context, file: Path) -> None:
    """Copy the SQLite database to FILE while the service runs (SQLite's online backup)."""
    from ..errors import ConfigError
    from ..store import backup

    try:
        size, took, rev = backup.backup(cli_config(ctx).database_url, file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"backed up to {file}: {size / 1e6:.1f} MB in {took:.1f} s (schema {rev})")


@click.command("restore")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--force", is_flag=True, help="Even when another process has the database open.")
@click.pass_context
def restore_command(ctx: click.Context, file: Path, force: bool) -> None:
    """Replace the SQLite database with the backup FILE (stop the service first)."""
    from ..errors import ConfigError
    from ..store import backup

    config = cli_config(ctx)
    try:
        path = backup.sqlite_path(config.database_url)
        users = backup.open_elsewhere(path) if path.exists() and not force else []
        if users:
            raise click.ClickException(f"{path} is open in process {users[0]} (the service?): stop it first "
                                       "(or --force)")
        size, rev = backup.restore(config.database_url, file)
    except ConfigError as e:
        raise click.ClickException(str(e)) from e
    click.echo(f"restored {file} into {path}: {size / 1e6:.1f} MB (schema {rev}; newer migrations run at start)")


@click.command("purge")
@click.option("--older-than", "older_than", help="Instead of MAILTRACK_RETENTION, e.g. 90d.")
@click.option("--dry-run", is_flag=True, help="Only count what would go.")
@click.pass_context
def purge_command(ctx: click.Context, older_than: str | None, dry_run: bool) -> None:
    """Purge emails (recipients, events, opens, clicks) older than the retention; daily rollups stay."""
    from ..config import parse_duration
    from ..store import retention

    config = cli_config(ctx)
    try:
        age = parse_duration(older_than) if older_than else config.retention
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--older-than") from e
    if age <= 0:
        raise click.ClickException("retention is 0 (keep everything): name an age with --older-than")
    cutoff = time.time() - age
    store = _store(ctx)
    since = time.strftime("%Y-%m-%d %H:%M", time.gmtime(cutoff))
    if dry_run:
        with store.read() as conn:
            n = retention.count(conn, cutoff)
        click.echo(f"would purge {n.emails} emails, {n.recipients} recipients, {n.events} events "
                   f"created before {since} UTC (nothing still queued)")
        return
    got = retention.purge(store, cutoff)
    click.echo(f"purged {got.emails} emails, {got.recipients} recipients, {got.events} events "
               f"created before {since} UTC in {got.seconds:.1f} s; daily rollups kept")
