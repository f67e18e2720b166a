"""``mailtrack bounce parse FILE... [--json]`` and ``bounce explain FILE``: the parser on saved messages.

The parser is imported when a command runs, not when the CLI starts (start-up time).
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from mailtrack.bounces.model import Report

MAX_FILE = 1024 * 1024  # larger files are read only this far (the parser looks at the first 256 KB)


# The operator's commands that read the store (list, show) attach themselves to this group from
# this module; it is imported only when one of them (or the group's help) is asked for, so that
# `bounce parse` does not load the database layer.
OPERATOR_COMMANDS = "mailtrack.inbound.command"


class _BounceGroup(click.Group):
    def _operator(self) -> None:
        from importlib import import_module

        import_module(OPERATOR_COMMANDS)

    def list_commands(self, ctx: click.Context) -> list[str]:
        self._operator()
        return super().list_commands(ctx)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name not in self.commands:
            self._operator()
        return super().get_command(ctx, name)


@click.group(name="bounce", cls=_BounceGroup)
def bounce() -> None:
    """Inspect bounces, delay notices, complaints and auto-replies."""


@bounce.command(name="parse")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line per file.")
def parse_command(files: tuple[str, ...], as_json: bool) -> None:
    """Parse returned messages (raw RFC 5322, mbox "From " line allowed; "-" reads stdin)."""
    from mailtrack.bounces.output import report_to_json
    from mailtrack.bounces.parse import parse_message

    failed = False
    for name in files:
        try:
            raw = _read(name)
        except OSError as exc:  # missing, a directory, no permission…
            click.echo(f"bounce parse: cannot read {name}: {exc.strerror or exc}", err=True)
            failed = True
            continue
        report = parse_message(raw)
        if as_json:
            click.echo(json.dumps(report_to_json(report, file=name), ensure_ascii=False))
        else:
            click.echo(_table(name, report))
    if failed:
        sys.exit(1)


@bounce.command(name="explain")
@click.argument("file")
def explain_command(file: str) -> None:
    """Show which detector matched and which lines decided recipient, code and hard/soft."""
    from mailtrack.bounces.explain import explain

    try:
        raw = _read(file)
    except OSError as exc:
        click.echo(f"bounce explain: cannot read {file}: {exc.strerror or exc}", err=True)
        sys.exit(1)
    click.echo(f"{file}:")
    for line in explain(raw):
        click.echo(f"  {line}" if line else "")


def _read(name: str) -> bytes:
    if name == "-":
        return sys.stdin.buffer.read(MAX_FILE)
    with open(name, "rb") as handle:
        return handle.read(MAX_FILE)


def _table(name: str, report: Report) -> str:
    """A short human-readable block: one header line, then one line per recipient."""
    head = f"{name}: {report.kind} (engine {report.engine})"
    if report.feedback_type:
        head += f", feedback type {report.feedback_type}"
    if report.mailtrack_id:
        head += f", X-Mailtrack-ID {report.mailtrack_id}"
    lines = [head]
    for r in report.recipients:
        hardness = "undetermined" if r.hard is None else "hard" if r.hard else "soft"
        diagnostic = (r.diagnostic[:100] + "…") if len(r.diagnostic) > 100 else r.diagnostic
        lines.append(f"  {r.address or '-':<40} {r.status or '-':<9} {r.reason:<18} {hardness:<12} {diagnostic}")
    if not report.recipients:
        lines.append("  (no recipient found)")
    return "\n".join(lines)
