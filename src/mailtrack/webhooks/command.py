"""``mailtrack webhook add|list|show|remove|replay``: the endpoints API for whoever runs the service."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

import click

from ..store import webhooks as wh
from ..store.delivery import account_named
from . import guard, payload


@click.group("webhook")
def webhook() -> None:
    """Webhook endpoints of an account: signed POSTs of every status change and event."""


def _account(conn: Any, name: str) -> int:
    found = account_named(conn, name)
    if found is None:
        raise click.ClickException(f"no account named {name!r}")
    return found


def _store(ctx: click.Context) -> tuple[Any, Any]:
    from ..clictx import cli_config, cli_store

    config = cli_config(ctx)
    return config, cli_store(config)


@webhook.command("add")
@click.option("--account", required=True, help="Account (site) name.")
@click.option("--url", required=True, help="http(s) URL that receives the POSTs.")
@click.option("--event", "events", multiple=True, help="Event type (repeat); all when omitted.")
@click.option("--description", default="", help="What this endpoint is for.")
@click.option("--batch", is_flag=True, help="POST arrays of up to 100 events.")
@click.pass_context
def add(ctx: click.Context, account: str, url: str, events: tuple[str, ...], description: str, batch: bool) -> None:
    """Add an endpoint; prints its id and its secret (shown only this once)."""
    bad = [e for e in events if e != "*" and e not in payload.EVENT_TYPES]
    if bad:
        raise click.BadParameter(f"unknown event type {bad[0]!r}; one of {', '.join(payload.EVENT_TYPES)}",
                                 param_hint="--event")
    config, store = _store(ctx)
    try:
        guard.check(url, config.webhook_allow_private)
    except guard.UnsafeURL as e:
        raise click.BadParameter(str(e), param_hint="--url") from e
    try:
        with store.write() as conn:
            view, secret = wh.create_endpoint(conn, _account(conn, account), url.strip(), list(events) or ["*"],
                                              description, batch, time.time())
    finally:
        store.dispose()
    click.echo(f"{view['id']}  {secret}")


@webhook.command("list")
@click.option("--account", required=True, help="Account (site) name.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_(ctx: click.Context, account: str, as_json: bool) -> None:
    """The account's endpoints."""
    _, store = _store(ctx)
    try:
        with store.read() as conn:
            rows = wh.list_endpoints(conn, _account(conn, account))
    finally:
        store.dispose()
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, sort_keys=True))
        else:
            state = "enabled" if r["enabled"] else f"DISABLED ({r['disabled_reason']})"
            click.echo(f"{r['id']}  {r['url']}  {','.join(r['events'])}  {'batch ' if r['batch'] else ''}{state}")


@webhook.command("show")
@click.option("--account", required=True, help="Account (site) name.")
@click.argument("endpoint_id")
@click.option("--limit", type=click.IntRange(1, 1000), default=20, show_default=True, help="Attempts shown.")
@click.pass_context
def show(ctx: click.Context, account: str, endpoint_id: str, limit: int) -> None:
    """One endpoint, its delivery counts and its latest attempts."""
    _, store = _store(ctx)
    try:
        with store.read() as conn:
            acct = _account(conn, account)
            ep = wh.get_endpoint(conn, acct, endpoint_id)
            counts = wh.delivery_counts(conn, endpoint_id)
            attempts = wh.attempts_of(conn, acct, endpoint_id, limit)
    finally:
        store.dispose()
    for k in ("id", "url", "events", "description", "batch", "enabled", "disabled_reason"):
        click.echo(f"{k:>16}: {ep[k]}")
    click.echo(f"{'deliveries':>16}: {json.dumps(counts, sort_keys=True)}")
    for a in attempts:
        when = datetime.fromtimestamp(a["at"]).isoformat(timespec="seconds")
        click.echo(f"  {when}  {a['status_code'] or '-':>4}  {a['latency_ms']:>6} ms  "
                   f"{len(a['deliveries'])} event(s)  {a['error'] or (a['response'] or '')[:60]}")


@webhook.command("remove")
@click.option("--account", required=True, help="Account (site) name.")
@click.argument("endpoint_id")
@click.pass_context
def remove(ctx: click.Context, account: str, endpoint_id: str) -> None:
    """Remove an endpoint and its delivery history."""
    _, store = _store(ctx)
    try:
        with store.write() as conn:
            wh.delete_endpoint(conn, _account(conn, account), endpoint_id)
    finally:
        store.dispose()
    click.echo(f"removed {endpoint_id}")


@webhook.command("replay")
@click.option("--account", required=True, help="Account (site) name.")
@click.argument("endpoint_id")
@click.option("--since", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"]),
              help="Queue again every event since this time (local time).")
@click.option("--event", "event_id", help="Or just this event (evt_…).")
@click.pass_context
def replay(ctx: click.Context, account: str, endpoint_id: str, since: datetime | None, event_id: str | None) -> None:
    """Send events again (the receiver deduplicates by event id)."""
    if (since is None) == (event_id is None):
        raise click.UsageError("give either --since or --event")
    event = None
    if event_id is not None:
        if not event_id.startswith("evt_") or not event_id[4:].isascii() or not event_id[4:].isdigit():
            raise click.BadParameter("expected evt_NUMBER", param_hint="--event")
        event = int(event_id[4:])
    _, store = _store(ctx)
    try:
        with store.write() as conn:
            n = wh.replay(conn, _account(conn, account), endpoint_id, time.time(),
                          since=since.timestamp() if since else None, event_id=event)
    finally:
        store.dispose()
    click.echo(f"queued {n} event(s)")
