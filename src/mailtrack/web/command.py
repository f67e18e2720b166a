"""`mailtrack user add | remove` and `mailtrack demo`."""

from __future__ import annotations

import contextlib
from pathlib import Path

import click


@click.group()
def user() -> None:
    """Manage web users (who can sign in to the Email Delivery Status pages)."""


@user.command("add")
@click.option("--account", required=True, help="Account (site) name; created when missing.")
@click.option("--email", required=True, help="Sign-in email address.")
@click.option("--password", help="Password (asked for, with confirmation, when left out).")
@click.pass_context
def user_add(ctx: click.Context, account: str, email: str, password: str | None) -> None:
    """Add a user, or set a new password for an existing one (which signs them out everywhere)."""
    from ..clictx import cli_config, cli_store
    from ..domain.addresses import AddressError, parse_address
    from ..store import accounts
    from .auth import hash_password

    try:
        _, addr = parse_address(email, "email")
    except AddressError as e:
        raise click.BadParameter(str(e), param_hint="--email") from e
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    if len(password) < 8:
        raise click.BadParameter("use at least 8 characters", param_hint="--password")
    store = cli_store(cli_config(ctx))
    try:
        with store.write() as conn:
            acct = accounts.get_or_create_account(conn, account)
            existed = accounts.find_user(conn, addr) is not None
            accounts.add_user(conn, acct, addr, hash_password(password))
    finally:
        store.dispose()
    click.echo(f"{'updated' if existed else 'added'} user {addr.lower()} in account {account!r}")


@user.command("remove")
@click.option("--email", required=True, help="Sign-in email address.")
@click.pass_context
def user_remove(ctx: click.Context, email: str) -> None:
    """Remove a user; every session of theirs ends at once."""
    from ..clictx import cli_config, cli_store
    from ..store import accounts

    store = cli_store(cli_config(ctx))
    try:
        with store.write() as conn:
            removed = accounts.remove_user(conn, email)
    finally:
        store.dispose()
    if not removed:
        raise click.ClickException(f"no user {email.strip().lower()!r}")
    click.echo(f"removed user {email.strip().lower()} and ended their sessions")


@click.command("demo")
@click.option("--http", "http", help="HOST:PORT for the web UI and API (default: MAILTRACK_HTTP). A busy port is "
              "an error; port 0 picks a free one.")
@click.option("--db", "db", type=click.Path(dir_okay=False), default=None,
              help="SQLite file for the demo; it is wiped at start. Default: MAILTRACK_DATABASE_URL when set "
                   "(kept, not wiped), else var/demo.db.")
@click.option("--sim-port", type=click.IntRange(0, 65535), default=0, show_default=True,
              help="Port of the mailbox simulator on 127.0.0.1 (0: any free port).")
@click.option("--duration", type=float, help="Stop by itself after this many seconds (default: until Ctrl-C).")
@click.pass_context
def demo(ctx: click.Context, http: str | None, db: str | None, sim_port: int, duration: float | None) -> None:
    """Run mailtrack with the mailbox simulator and send a realistic mix of emails.

    Within a minute every status and symbol can be seen: sent, deferred, soft and hard bounce,
    rejected, opened, clicked and marked as spam.
    """
    import asyncio
    import os
    import signal
    import sys

    from ..clictx import cli_config
    from ..config import parse_hostport
    from .demo import PortBusy, claim_port

    # piped output (| tee, a log file) shows each line as it happens, not when the demo exits
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(AttributeError, ValueError):
            stream.reconfigure(line_buffering=True)  # type: ignore[union-attr]
    config = cli_config(ctx)
    try:
        host, port = parse_hostport(http) if http else config.http
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--http") from e
    try:
        port = claim_port(host, port, "web UI", "--http HOST:PORT")
        if sim_port:
            claim_port("127.0.0.1", sim_port, "mailbox simulator", "--sim-port")
    except PortBusy as e:
        raise click.ClickException(str(e)) from None
    if db is not None:
        db_path: Path | None = Path(db)
    elif os.environ.get("MAILTRACK_DATABASE_URL"):
        db_path = None
    else:
        db_path = Path("var/demo.db")
    try:
        # the address first, before the slower imports and the start-up
        click.echo(f"mailtrack demo starting: open http://{host}:{port}/emails (sign-in details follow)")
        from ..serve import setup_logging
        from .demo import run_demo

        setup_logging("warning" if config.log_level == "info" else config.log_level)
        asyncio.run(run_demo(config, db_path, (host, port), duration, echo=click.echo, sim_port=sim_port))
    except KeyboardInterrupt:  # Ctrl-C before the loop installed its handler: stop quietly, no traceback
        click.echo("demo: stopped")
    finally:
        # a Ctrl-C that uvicorn captured is raised again when it exits: the demo is over, let it go
        signal.signal(signal.SIGINT, signal.SIG_IGN)
