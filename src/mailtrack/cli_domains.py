"""`mailtrack domain add|list|show|check|rotate|remove`: sending domains, DKIM keys, DNS records."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from .errors import MailtrackError

T = TypeVar("T")


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except MailtrackError as e:
        raise click.ClickException(e.message) from e


def _ctx(ctx: click.Context) -> tuple[Any, Any]:
    from .clictx import cli_config, cli_store

    config = cli_config(ctx)
    return config, cli_store(config)


def _account_id(store: Any, name: str) -> int:
    from .cli_mail import _account

    with store.read() as conn:
        return _account(conn, name)


def _print(view: Any) -> None:
    state = (f"signing with selector {view['selector']}" if view["signing"]
             else "not signing yet (publish the DKIM record, then `mailtrack domain check`)")
    checked = (datetime.fromtimestamp(view["checked_at"], UTC).strftime("%Y-%m-%d %H:%M UTC")
               if view["checked_at"] else "never")
    click.echo(f"{view['domain']}  (account {view['account']})  {state}; last checked {checked}")
    if view["return_path"]:
        click.echo(f"  return path: bounces+TOKEN@{view['return_path']}")
    click.echo("  publish these records:")
    for r in view["records"]:
        click.echo(f"  [{r['status']}] {r['type']} {r['name']}" + ("" if r["status"] == "ok" else f"  — {r['detail']}"))
        click.echo(f"      {r['value']}")
        click.echo(f"      {r['purpose']}")


def _show(view: Any, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(view, indent=2))
    else:
        _print(view)


def _run(ctx: click.Context, fn: Callable[[Any, Any], T]) -> T:
    config, store = _ctx(ctx)
    with _errors():
        return fn(config, store)


@click.group("domain")
def domain() -> None:
    """Sending domains: DKIM keys, the DNS records to publish, and their checks."""


@domain.command("add")
@click.argument("name")
@click.option("--account", required=True, help="The account that sends as this domain.")
@click.option("--return-path", metavar="HOST", help="Aligned VERP host, e.g. bounces.acme.example (CNAME to "
              "the bounce domain).")
@click.option("--selector", help="DKIM selector (default: mtYYYYMMxxxx).")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def add(ctx: click.Context, name: str, account: str, return_path: str | None, selector: str | None,
        as_json: bool) -> None:
    """Claim NAME for an account and make its first DKIM key."""
    from .domains import service

    def go(config: Any, store: Any) -> Any:
        return service.add(store, config, _account_id(store, account), name, return_path=return_path,
                           selector=selector)

    _show(_run(ctx, go), as_json)


@domain.command("list")
@click.option("--account", help="Only this account's domains.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_(ctx: click.Context, account: str | None, as_json: bool) -> None:
    """Every sending domain, whether it signs, and how its records check out."""
    from .domains import service

    def go(config: Any, store: Any) -> Any:
        return service.listing(store, config, _account_id(store, account) if account else None)

    views = _run(ctx, go)
    if as_json:
        click.echo(json.dumps(views, indent=2))
        return
    if not views:
        click.echo("no sending domains; add one with `mailtrack domain add DOMAIN --account NAME`")
    for v in views:
        bad = [r for r in v["records"] if r["status"] != "ok"]
        click.echo(f"{v['domain']:<40} {v['account']:<20} {'signing' if v['signing'] else 'not signing':<12} "
                   + (f"{len(bad)} record(s) to fix" if bad else "all records ok"))


@domain.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable: {domain, records: [{type, name, value, "
              "purpose, status}], …}.")
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """The records to publish for NAME and the state of each check."""
    from .domains import service

    _show(_run(ctx, lambda config, store: service.get(store, config, name)), as_json)


@domain.command("check")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def check(ctx: click.Context, name: str, as_json: bool) -> None:
    """Look the records up in DNS now (MAILTRACK_DNS_RESOLVER or the system resolver); signing starts once
    the DKIM record checks out."""
    from .domains import service

    _show(_run(ctx, lambda config, store: service.check(store, config, name)), as_json)


@domain.command("rotate")
@click.argument("name")
@click.option("--selector", help="The new selector (default: generated).")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def rotate(ctx: click.Context, name: str, selector: str | None, as_json: bool) -> None:
    """Make a new DKIM key; publish it next to the old one; signing switches when it checks out."""
    from .domains import service

    _show(_run(ctx, lambda config, store: service.rotate(store, config, name, selector=selector)), as_json)


@domain.command("remove")
@click.argument("name")
@click.pass_context
def remove(ctx: click.Context, name: str) -> None:
    """Forget NAME and its keys; its mail then goes out unsigned (or is refused, per MAILTRACK_UNVERIFIED_FROM)."""
    from .domains import service

    _run(ctx, lambda config, store: service.remove(store, name))
    click.echo(f"removed {name}")
