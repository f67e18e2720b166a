"""``mailtrack simulator``: the click command (registered by the main CLI)."""

from __future__ import annotations

import logging

import click

from .server import parse_hostport, run_simulator

_HELP = """Run the mailbox simulator: an SMTP server that plays the recipient's side
for a test domain. The recipient's local part chooses what happens (a +label is
ignored, case does not matter, unknown local parts behave like success):

\b
  success            250 at the end of DATA
  bounce             550 5.1.1 user unknown, at RCPT
  mailbox-full       552 5.2.2 mailbox full, at RCPT
  blocked            550 5.7.1 rejected by local policy, at RCPT
  defer              451 4.7.1 try again later, at RCPT, always
  defer-then-accept  451 4.7.1 twice for the same address, then 250
  rate-limit         421 4.7.28 "unusual rate … rate limited", at RCPT: the sender pauses the provider
  slow               answers DATA after --slow-delay seconds
  disconnect         drops the connection during DATA, without a reply
  late-bounce        250, then a DSN (5.1.1) to the envelope sender via --report-to
  complaint          250, then an ARF abuse report to the envelope sender via --report-to
  ooto               250, then an out-of-office auto-reply via --report-to
  open               250, then loads the tracking pixel (a desktop browser)
  click              250, then loads the pixel and follows the first link

Other domains get 550 5.7.1 (never a relay). Example:

\b
  mailtrack simulator --listen 127.0.0.1:2526 --domain sim.mailtrack.test \\
      --report-to 127.0.0.1:2525
"""


def _validate_hostport(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is None:
        return None
    try:
        parse_hostport(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value


@click.command("simulator", help=_HELP, short_help="Run the mailbox simulator (a test SMTP recipient).")
@click.option(
    "--listen",
    default="127.0.0.1:2526",
    show_default=True,
    callback=_validate_hostport,
    help="HOST:PORT to accept SMTP on (port 0 picks a free one).",
)
@click.option(
    "--domain",
    default="sim.mailtrack.test",
    show_default=True,
    help="The test domain; mail for any other domain is refused with 550 5.7.1.",
)
@click.option(
    "--report-to",
    default=None,
    callback=_validate_hostport,
    help="HOST:PORT of the inbound SMTP server that receives DSNs, ARF reports and "
    "auto-replies (sent with MAIL FROM:<> to the message's envelope sender). "
    "Without it, late-bounce, complaint and ooto send nothing.",
)
@click.option(
    "--followup-delay",
    type=click.FloatRange(min=0),
    default=0.5,
    show_default=True,
    help="Seconds between the 250 and the report, pixel load or click.",
)
@click.option(
    "--slow-delay",
    type=click.FloatRange(min=0),
    default=3.0,
    show_default=True,
    help="Seconds the slow@ mailbox waits before answering DATA.",
)
@click.option(
    "--max-size",
    type=click.IntRange(min=1),
    default=25 * 1024 * 1024,
    show_default=True,
    help="Largest message in bytes; bigger ones get 552 5.3.4.",
)
def simulator_command(
    listen: str,
    domain: str,
    report_to: str | None,
    followup_delay: float,
    slow_delay: float,
    max_size: int,
) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_simulator(
        listen,
        domain,
        report_to,
        followup_delay=followup_delay,
        slow_delay=slow_delay,
        max_size=max_size,
    )
