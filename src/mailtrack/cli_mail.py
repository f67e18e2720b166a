"""`mailtrack send` and `mailtrack status`: submit an email and read its per-recipient status from a shell."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from pydantic import ValidationError

from .errors import MailtrackError

SYMBOLS = {
    "creating": "…", "spooled": "…", "sent": "✓", "deferred": "↻",
    "hard_bounce": "✗", "soft_bounce": "!", "rejected": "⊘",
}
SOURCE_TYPES = ("task_sheet", "invoice", "purchase_order", "event_message")


def _split(values: tuple[str, ...]) -> list[str]:
    """Repeated options and comma-separated lists both work: --to a@x --to b@x, or --to 'a@x, b@x'."""
    out: list[str] = []
    for v in values:
        out += [p.strip() for p in v.split(",") if p.strip()]
    return out


def _read(path: str | None, what: str) -> str | None:
    if path is None:
        return None
    try:
        return Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise click.BadParameter(f"cannot read {path}: {e}", param_hint=what) from e


def _account(conn: Any, name: str) -> int:
    from .store.delivery import account_named

    found = account_named(conn, name)
    if found is None:
        raise click.ClickException(
            f"no account named {name!r}; create it with `mailtrack apikey create --account {name}`")
    return found


@click.command("send")
@click.option("--account", required=True, help="Account (site) name the email belongs to.")
@click.option("--from", "from_", required=True, metavar="ADDRESS", help="Sender: 'Name <addr>' or 'addr'.")
@click.option("--to", multiple=True, metavar="ADDRESS", help="Recipient (repeatable, or comma-separated).")
@click.option("--cc", multiple=True, metavar="ADDRESS", help="Visible copy (repeatable).")
@click.option("--bcc", multiple=True, metavar="ADDRESS", help="Hidden copy (repeatable); never shown in headers.")
@click.option("--reply-to", metavar="ADDRESS", help="Where replies should go.")
@click.option("--subject", required=True, help="Subject line (any language).")
@click.option("--text", help="Plain-text body.")
@click.option("--text-file", type=click.Path(dir_okay=False), help="Read the plain-text body from a UTF-8 file.")
@click.option("--html-file", type=click.Path(dir_okay=False), help="Read the HTML body from a UTF-8 file.")
@click.option("--source-type", type=click.Choice(SOURCE_TYPES), help="What the email is about.")
@click.option("--reference", help="The task / invoice / order number it belongs to (needs --source-type).")
@click.option("--client", help="Client id or external reference (its tracking setting applies).")
@click.option("--track/--no-track", default=None, help="Force open/click tracking on or off for this email.")
@click.pass_context
def send(ctx: click.Context, account: str, from_: str, to: tuple[str, ...], cc: tuple[str, ...],
         bcc: tuple[str, ...], reply_to: str | None, subject: str, text: str | None, text_file: str | None,
         html_file: str | None, source_type: str | None, reference: str | None, client: str | None,
         track: bool | None) -> None:
    """Submit an email; a running `mailtrack serve` or `mailtrack worker` delivers it.

    \b
    Example:
      mailtrack send --account acme --from 'Acme <ops@acme.example>' \\
        --to customer@example.com --bcc archive@acme.example \\
        --subject 'Task sheet T-1042' --text 'Your technician arrives at 9:00.' \\
        --source-type task_sheet --reference T-1042
    """
    from .api.convert import to_new_email
    from .api.schemas import EmailIn
    from .clictx import cli_config, cli_store
    from .store import submit

    if text is not None and text_file is not None:
        raise click.UsageError("give --text or --text-file, not both")
    body_text = text if text is not None else _read(text_file, "--text-file")
    html = _read(html_file, "--html-file")
    if body_text is None and html is None:
        raise click.UsageError("give a body: --text, --text-file or --html-file")
    if reference and not source_type:
        raise click.UsageError("--reference needs --source-type (task_sheet, invoice, purchase_order, …)")
    if not (to or cc or bcc):
        raise click.UsageError("give at least one recipient with --to, --cc or --bcc")
    raw: dict[str, Any] = {"from": from_, "to": _split(to), "cc": _split(cc), "bcc": _split(bcc),
                           "reply_to": reply_to, "subject": subject, "text": body_text, "html": html,
                           "client": client, "tracking": track}
    if source_type:
        raw["source"] = {"type": source_type, "reference": reference}
    try:
        body = EmailIn.model_validate(raw)
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "input"
        raise click.ClickException(f"{where}: {first.get('msg', 'invalid')}") from e
    config = cli_config(ctx)
    try:
        new = to_new_email(body, config.max_message_size)
        store = cli_store(config)
        with store.write() as conn:
            acct = _account(conn, account)
        from .domains import policy

        policy.enforce(store, config.unverified_from, acct, [("from", new.from_addr)])
        with store.write() as conn:
            [(email_id, _created)] = submit.submit(conn, acct, [new])
        with store.read() as conn:
            from .store import queries

            view = queries.get_email(conn, acct, email_id, timeline=False)
    except MailtrackError as e:
        where = f"{e.field}: " if e.field else ""
        raise click.ClickException(f"{where}{e.message}") from e
    click.echo(f"email {email_id}")
    for r in view["recipients"]:
        click.echo(f"  {r['kind']:<3}  {r['address']}  {r['status']}" + (f"  ({r['reason']})" if r["reason"] else ""))
    click.echo(f"follow it with: mailtrack status {email_id}")


@click.command("status")
@click.argument("email_id", required=False)
@click.option("--account", help="Account name (default: the account the email belongs to).")
@click.pass_context
def status(ctx: click.Context, email_id: str | None, account: str | None) -> None:
    """Show every recipient of an email: delivery status, reason, opens and clicks.
    Without EMAIL_ID: the delivery queue and the mail providers paused after a rate-limit reply.

    \b
    Symbols: ✓ sent  … spooled  ↻ deferred (will retry)  ✗ hard bounce  ! soft bounce  ⊘ rejected
    """
    if email_id is None:
        from .cli_overview import overview

        overview(ctx)
        return
    from .clictx import cli_config, cli_store
    from .domain.status import LABELS
    from .store import queries
    from .store.delivery import account_of_email

    store = cli_store(cli_config(ctx))
    try:
        with store.read() as conn:
            acct = _account(conn, account) if account else account_of_email(conn, email_id)
            if acct is None:
                raise click.ClickException(f"no email {email_id!r}")
            view = queries.get_email(conn, acct, email_id, timeline=False)
    except MailtrackError as e:
        raise click.ClickException(e.message) from e
    click.echo(f"email {view['id']}  {view['subject']!r}  from {view['from']}  — {view['status']}")
    rows = [("", "kind", "address", "status", "opens", "clicks", "reason")]
    for r in view["recipients"]:
        opens, clicks = r["opens"], r["clicks"]
        rows.append((SYMBOLS.get(r["status"], "?"), r["kind"], r["address"], LABELS.get(r["status"], r["status"]),
                     f"{opens['total']} ({opens['human']} human)", f"{clicks['total']} ({clicks['human']} human)",
                     r["reason"] or ""))
    widths = [max(len(row[i]) for row in rows) for i in range(6)]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row[:6], widths, strict=True)) + "  " + row[6])
