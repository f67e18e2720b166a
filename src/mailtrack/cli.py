"""The `mailtrack` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from .clictx import cli_config, cli_store
from .config import SETTINGS, load_config
from .errors import MailtrackError


class _LazyGroup(click.Group):
    """Imports the modules of _register_optional only when a command is looked for (start-up time)."""

    pending: list[tuple[str, str]] = []

    def _load(self, until: str | None = None) -> None:
        from importlib import import_module

        while self.pending and (until is None or until not in self.commands):
            module, attr = self.pending.pop(0)
            # no try/except: a module that fails to import is a broken install, said at once
            self.add_command(getattr(import_module(module), attr))

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._load()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        self._load(until=name)
        return super().get_command(ctx, name)


@click.group(cls=_LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--config", "config_file", type=click.Path(dir_okay=False), envvar="MAILTRACK_CONFIG",
              help="TOML file with settings (environment variables MAILTRACK_* win).")
@click.version_option(package_name="mailtrack")
@click.pass_context
def main(ctx: click.Context, config_file: str | None) -> None:
    """mailtrack — email delivery and tracking for business applications.

    Settings come from MAILTRACK_* environment variables; `mailtrack settings` lists them.
    """
    ctx.ensure_object(dict)
    ctx.obj["config_file"] = config_file


@main.command()
@click.option("--role", "roles", multiple=True, type=click.Choice(["api", "worker", "inbound", "submission"]),
              help="Run only these parts (repeatable). Default: all, as set by MAILTRACK_WORKER/INBOUND.")
@click.pass_context
def serve(ctx: click.Context, roles: tuple[str, ...]) -> None:
    """Run the HTTP API/UI/tracking, the delivery worker and the inbound SMTP server."""
    from .serve import run_roles, setup_logging

    config = cli_config(ctx)
    setup_logging(config.log_level, config.log_format)
    if not roles:
        roles = ("api",) + (("worker",) if config.worker else ()) + (("inbound",) if config.inbound else ())
        if config.submission_smtp is not None or config.submissions_smtp is not None:
            roles += ("submission",)
    store = cli_store(config)
    host, port = config.http
    if "api" in roles:
        click.echo(f"mailtrack serving on http://{host}:{port}  (roles: {', '.join(roles)}; "
                   f"database: {_safe_url(config.database_url)})")
    _run_loop(run_roles(config, roles, store))


def _run_loop(coro: Any) -> Any:
    """Run on uvloop when installed (uvicorn[standard] brings it): about twice the HTTP throughput."""
    import asyncio  # here, not at the top: start-up time of the short commands

    try:
        import uvloop
    except ImportError:
        return asyncio.run(coro)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(coro)


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


@main.command()
@click.pass_context
def worker(ctx: click.Context) -> None:
    """Run only the delivery worker (run several against one PostgreSQL to scale out)."""
    from .serve import run_roles, setup_logging

    config = cli_config(ctx)
    setup_logging(config.log_level, config.log_format)
    _run_loop(run_roles(config, ("worker",), cli_store(config)))


@main.command()
@click.pass_context
def inbound(ctx: click.Context) -> None:
    """Run only the inbound SMTP server for bounces and feedback reports."""
    from .serve import run_roles, setup_logging

    config = cli_config(ctx)
    setup_logging(config.log_level, config.log_format)
    _run_loop(run_roles(config, ("inbound",), cli_store(config)))


@main.command("settings")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def settings_cmd(ctx: click.Context, as_json: bool) -> None:
    """List every setting: name, current value, default and what it does."""
    config = load_config(file=ctx.obj.get("config_file")) if not as_json else None
    rows = []
    for s in SETTINGS:
        value = getattr(config, s.name.lower()) if config else None
        shown = "(set)" if s.secret and value else value
        rows.append({"name": f"MAILTRACK_{s.name}", "default": s.default, "value": shown, "help": s.help})
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
        return
    for r in rows:
        click.echo(f"{r['name']}\n    {r['help']}\n    default: {r['default'] or '(empty)'}   now: {r['value']}")


@main.group()
def apikey() -> None:
    """Manage API keys."""


@apikey.command("create")
@click.option("--account", required=True, help="Account (site) name; created when missing.")
@click.option("--expires", help="Valid for this long (e.g. 90d, 12h); default: until revoked.")
@click.pass_context
def apikey_create(ctx: click.Context, account: str, expires: str | None) -> None:
    """Create an API key; the key is printed alone on the last line (shown only once)."""
    from .config import parse_duration
    from .store import accounts
    from .store.ids import now

    try:
        expires_at = now() + parse_duration(expires) if expires else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--expires") from e
    store = cli_store(cli_config(ctx))
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, account)
        key = accounts.create_api_key(conn, acct, expires_at)
    click.echo(f"API key for account {account!r} (store it now; it is not shown again):", err=False)
    click.echo(key)


@apikey.command("list")
@click.option("--account", required=True, help="Account (site) name.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def apikey_list(ctx: click.Context, account: str, as_json: bool) -> None:
    """List an account's keys: id, prefix, created, last used, expiry, revocation (never the key)."""
    from .api.routes_keys import key_view
    from .store import accounts

    store = cli_store(cli_config(ctx))
    with store.read() as conn:
        acct = accounts.find_account(conn, account)
        if acct is None:
            raise click.ClickException(f"no account {account!r}")
        rows = [key_view(r) for r in accounts.list_api_keys(conn, acct)]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'ID':>5}  {'PREFIX':<12} {'CREATED':<25} {'LAST USED':<25} {'EXPIRES':<25} REVOKED")
    for r in rows:
        click.echo(f"{r['id']:>5}  {r['prefix'] + '…':<12} {r['created_at']:<25} {r['last_used_at'] or '-':<25} "
                   f"{r['expires_at'] or '-':<25} {r['revoked_at'] or '-'}")


@apikey.command("revoke")
@click.argument("key_id")
@click.pass_context
def apikey_revoke(ctx: click.Context, key_id: str) -> None:
    """Revoke a key, given as its ID from `apikey list` or as the key itself.

    Every process refuses it within 30 seconds (the time an API process keeps a key in memory).
    """
    from .store import accounts

    store = cli_store(cli_config(ctx))
    try:
        with store.write() as conn:
            row = accounts.revoke_api_key(conn, key_id)
    except MailtrackError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"revoked API key {row['id']} ({row['prefix']}…)")


def _register_optional() -> None:
    """Commands that live with their component (imported when first looked for, in this order)."""
    for module, attr in (
        ("mailtrack.bounces.command", "bounce"),  # parse / explain; list / show attach from inbound.command
        ("mailtrack.simulator.command", "simulator_command"),
        ("mailtrack.cli_mail", "send"),
        ("mailtrack.cli_mail", "status"),
        ("mailtrack.web.command", "user"),
        ("mailtrack.web.command", "demo"),
        ("mailtrack.webhooks.command", "webhook"),
        ("mailtrack.cli_domains", "domain"),
        ("mailtrack.ops.command", "queue_group"),
        ("mailtrack.ops.command", "backup_command"),
        ("mailtrack.ops.command", "restore_command"),
        ("mailtrack.ops.command", "purge_command"),
    ):
        _LazyGroup.pending.append((module, attr))


_register_optional()


def run() -> None:  # pragma: no cover - console entry
    try:
        main()
    except MailtrackError as e:
        click.echo(f"error: {e.message}", err=True)
        sys.exit(2)


if __name__ == "__main__":  # pragma: no cover
    run()

__all__ = ["Path", "main", "run"]
