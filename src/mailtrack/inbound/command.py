"""Operator commands for what the inbound server received: ``mailtrack bounce list`` / ``show``.

Orphans (reports that matched no recipient) belong to no account, so the API never shows them;
these commands read the store directly, for whoever runs the service.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from ..bounces.command import bounce
from ..store import inbound

STATES = ("stored", "applied", "orphan", "unparsed")


def _when(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S")


@bounce.command(name="list")
@click.option("--state", type=click.Choice(STATES), help="Only messages in this state (e.g. orphan, unparsed).")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.pass_context
def list_command(ctx: click.Context, state: str | None, limit: int, as_json: bool) -> None:
    """List the reports the inbound server received, newest first, across all accounts."""
    from ..clictx import cli_config, cli_store

    store = cli_store(cli_config(ctx))
    try:
        with store.read() as conn:
            rows, total = inbound.search(conn, state=state, limit=limit)
    finally:
        store.dispose()
    for r in rows:
        if as_json:
            click.echo(json.dumps(r, sort_keys=True))
            continue
        summary = r["summary"] or {}
        detail = summary.get("error") or ", ".join(summary.get("unmatched", [])) or r["recipient_id"] or ""
        click.echo(f"{r['id']:>7}  {_when(r['received_at'])}  {r['state']:<8}  {r['kind'] or '-':<9}  "
                   f"{','.join(r['rcpt_to'])[:50]:<50}  {detail}")
    if not as_json:
        click.echo(f"{len(rows)} of {total} shown" + (f" (state {state})" if state else ""), err=True)


@bounce.command(name="show")
@click.argument("message_id", type=int)
@click.option("--raw", is_flag=True, help="Print the stored message exactly as received.")
@click.pass_context
def show_command(ctx: click.Context, message_id: int, raw: bool) -> None:
    """Show one received report: envelope, state, what it was correlated to, or the raw message."""
    from ..clictx import cli_config, cli_store

    store = cli_store(cli_config(ctx))
    try:
        with store.read() as conn:
            msg = inbound.get(conn, message_id)
    finally:
        store.dispose()
    if msg is None:
        raise click.ClickException(f"no received message {message_id}")
    if raw:
        sys.stdout.buffer.write(msg["raw"])
        return
    for key in ("id", "state", "kind", "mail_from", "rcpt_to", "recipient_id"):
        click.echo(f"{key:>13}: {msg[key]}")
    click.echo(f"{'received_at':>13}: {_when(msg['received_at'])} UTC")
    click.echo(f"{'summary':>13}: {msg['summary_json'] or '-'}")
    click.echo(f"{'size':>13}: {len(msg['raw'])} bytes (--raw prints it)")
