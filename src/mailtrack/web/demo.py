"""`mailtrack demo`: the whole service plus the mailbox simulator, and a realistic mix of emails.

Timings are short (retries after 2s, 4s, 8s; give up after 30s) so that deferred → soft bounce,
late bounces, opens, clicks and complaints all show within a minute.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import Config
from ..store import accounts, suppressions
from ..store.db import Store, open_store

SIM_DOMAIN = "sim.mailtrack.test"
DEMO_ACCOUNT = "demo"
DEMO_USER = "demo@mailtrack.test"
SUPPRESSED = f"success+former-tenant@{SIM_DOMAIN}"
PORTAL = "https://portal.example.test"


class PortBusy(OSError):
    """The port asked for is taken: the demo says so instead of moving elsewhere silently."""


def claim_port(host: str, port: int, what: str, option: str) -> int:
    """``port`` when it can be bound on ``host`` (0: one the OS picks); PortBusy naming the option otherwise."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError as e:
            raise PortBusy(f"cannot use {host}:{port} for the {what}: {e.strerror or e}. Stop what is using it, "
                           f"or choose another port with {option} (port 0 picks a free one).") from None
        return int(s.getsockname()[1])


def free_port(host: str, port: int) -> int:
    """``port`` when it can be bound on ``host``, else one the OS picks."""
    for candidate in (port, 0):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, candidate))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise OSError(f"no free port on {host}")


def _wipe(db: Path) -> None:
    db.parent.mkdir(parents=True, exist_ok=True)
    for suffix in ("", "-wal", "-shm", "-journal"):
        with contextlib.suppress(FileNotFoundError):
            Path(f"{db}{suffix}").unlink()


def seed(store: Store) -> dict[str, str]:
    """Account, a user, three clients (one with tracking off), an API key and one suppressed address."""
    from .auth import hash_password

    password = secrets.token_urlsafe(9)
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, DEMO_ACCOUNT)
        accounts.add_user(conn, acct, DEMO_USER, hash_password(password))  # a known user gets a new password
        known = {c["external_ref"] for c in accounts.list_clients(conn, acct)}
        for ref, name, tracking in (("ACME", "Acme Facilities", None), ("NORTH", "Northwind Logistics", False),
                                    ("CONTOSO", "Contoso Retail", True)):
            if ref not in known:
                accounts.create_client(conn, acct, ref, name, tracking)
        key = accounts.create_api_key(conn, acct)
        suppressions.add(conn, acct, SUPPRESSED, "unsubscribed: asked by phone to stop invoices", "manual")
    return {"email": DEMO_USER, "password": password, "key": key}


def _html(title: str, lines: list[str], link: str, label: str) -> str:
    paras = "".join(f"<p>{line}</p>" for line in lines)
    return (f"<html><body><h2>{title}</h2>{paras}<p><a href=\"{link}\">{label}</a></p>"
            f"<p>Kind regards,<br>Acme Field Services</p></body></html>")


def _a(local: str) -> str:
    return f"{local}@{SIM_DOMAIN}"


def mix() -> list[dict[str, Any]]:
    """Task sheets, invoices, purchase orders and event messages to every simulator behaviour."""
    frm = "Acme Field Services <office@acme-field.test>"

    def task(ref: str, to: list[str], **kw: Any) -> dict[str, Any]:
        body = {"from": frm, "to": to, "subject": f"Task sheet {ref}: boiler service",
                "html": _html(f"Task sheet {ref}", ["Technician visit scheduled for Tuesday 09:00.",
                                                    "Please make sure the boiler room is accessible."],
                              f"{PORTAL}/tasks/{ref}", "Open the task sheet"),
                "source": {"type": "task_sheet", "reference": ref}}
        return {**body, **kw}

    def invoice(ref: str, to: list[str], amount: str, **kw: Any) -> dict[str, Any]:
        body = {"from": frm, "to": to, "subject": f"Invoice {ref} ({amount})",
                "html": _html(f"Invoice {ref}", [f"Amount due: {amount}, payable within 30 days."],
                              f"{PORTAL}/invoices/{ref}", "View and pay the invoice"),
                "source": {"type": "invoice", "reference": ref}}
        return {**body, **kw}

    def order(ref: str, to: list[str], **kw: Any) -> dict[str, Any]:
        body = {"from": frm, "to": to, "subject": f"Purchase order {ref}",
                "html": _html(f"Purchase order {ref}", ["Please confirm delivery of 12 × filter cartridges."],
                              f"{PORTAL}/orders/{ref}", "Confirm the order"),
                "source": {"type": "purchase_order", "reference": ref}}
        return {**body, **kw}

    def event(ref: str, ev: str, to: list[str], **kw: Any) -> dict[str, Any]:
        what = ev.replace("_", " ")
        body = {"from": frm, "to": to, "subject": f"{ref}: {what}",
                "html": _html(what.capitalize(), [f"{ref} was updated: {what}."], f"{PORTAL}/tasks/{ref}",
                              "See the schedule"),
                "source": {"type": "event_message", "reference": ref, "event": ev}}
        return {**body, **kw}

    return [
        task("T-1042", [_a("success+facilities")], cc=[_a("open+site-manager")], bcc=[_a("click+archive")],
             client="ACME"),
        event("T-1042", "task_created", [_a("click+technician"), _a("defer-then-accept+dispatch")], client="ACME"),
        event("T-1042", "schedule_created", [_a("defer+planner")], cc=[_a("open+coordinator")], client="ACME"),
        invoice("INV-2024-0815", [_a("open+accounts")], "€ 1,240.00", cc=[_a("success+finance")], client="ACME"),
        invoice("INV-2024-0816", [_a("bounce+old-contact")], "€ 310.50", client="CONTOSO"),
        order("PO-5531", [_a("mailbox-full+supplier")], client="NORTH"),
        task("T-1043", [_a("late-bounce+site")], cc=[_a("complaint+owner")], client="CONTOSO"),
        invoice("INV-2024-0817", [_a("blocked+payables")], "€ 89.90", client="NORTH"),
        order("PO-5532", [_a("ooto+buyer")], client="CONTOSO", tracking=False),
        task("T-1044", [SUPPRESSED], cc=[_a("open+tenant")], client="ACME"),
        {"from": frm, "to": [_a("success+foreman")], "subject": "T-1043: task created",
         "text": f"T-1043 was created. Details: {PORTAL}/tasks/T-1043",
         "source": {"type": "event_message", "reference": "T-1043", "event": "task_created"}, "client": "CONTOSO"},
        invoice("INV-2024-0818", [_a("success+northwind")], "€ 2,015.00", client="NORTH"),
        order("PO-5533", [_a("success+warehouse"), _a("click+purchasing")], client="CONTOSO"),
    ]


def send_all(url: str, key: str, emails: list[dict[str, Any]], stop: threading.Event,
             echo: Callable[[str], Any], pause: float = 0.3) -> int:
    """POST each email through the real HTTP API; returns how many were accepted."""
    sent = 0
    for body in emails:
        if stop.is_set():
            break
        req = urllib.request.Request(  # noqa: S310 - our own http:// URL
            f"{url}/api/v1/emails", data=json.dumps(body).encode(), method="POST",
            headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
        )
        deadline = time.monotonic() + 15
        while not stop.is_set():
            try:
                with urllib.request.urlopen(req, timeout=10) as resp:  # noqa: S310 - our own http:// URL
                    resp.read()
                sent += 1
                break
            except urllib.error.HTTPError as e:
                echo(f"demo: {body['subject']!r} refused: {e.code} {e.read()[:300]!r}")
                break
            except OSError:
                # the HTTP server may still be binding
                if time.monotonic() > deadline:
                    echo(f"demo: cannot reach {url}")
                    return sent
                time.sleep(0.2)
        time.sleep(pause)
    return sent


def progress_line(stats: dict[str, dict[str, int]]) -> str:
    """'demo: sent 7, deferred 1, … | opened 2, clicked 1, complained 1' from /api/v1/stats data."""
    statuses = ", ".join(f"{k} {v}" for k, v in sorted(stats["statuses"].items()))
    engagement = ", ".join(f"{k} {stats['events'][k]}" for k in ENGAGEMENT if stats["events"].get(k))
    return f"demo: recipients now {statuses or 'none'}" + (f" | events: {engagement}" if engagement else "")


ENGAGEMENT = ("deferred", "delay_notice", "opened", "clicked", "complained", "auto_reply")


async def report_progress(store: Store, echo: Callable[[str], Any], every: float = 5.0) -> None:
    """Print how the recipients' statuses move, whenever they changed, until cancelled."""
    from ..store import queries

    def read() -> dict[str, Any]:
        with store.read() as conn:
            return queries.stats(conn, accounts.get_or_create_account(conn, DEMO_ACCOUNT))  # seeded: a read

    last = ""
    while True:
        await asyncio.sleep(every)
        try:
            line = progress_line(await asyncio.to_thread(read))
        except Exception as e:  # progress is a courtesy; never stop the demo for it
            line = f"demo: could not read the statistics ({e})"
        if line != last:
            echo(line)
            last = line


async def run_demo(config: Config, db: Path | None, http: tuple[str, int], duration: float | None,
                   echo: Callable[[str], Any], sim_port: int = 0) -> None:
    """Run until ``duration`` is up, Ctrl-C or SIGTERM. ``db``: a SQLite file to wipe and use;
    None: ``config.database_url`` as it is (MAILTRACK_DATABASE_URL), kept."""
    import signal

    from ..serve import run_roles
    from ..simulator import Simulator

    host = http[0]
    url = f"http://{host}:{http[1]}"
    inbound = ("127.0.0.1", free_port("127.0.0.1", config.inbound_smtp[1]))
    if db is not None:
        _wipe(db)
    database_url = f"sqlite:///{db}" if db is not None else config.database_url
    interrupted = asyncio.Event()  # Ctrl-C before the server has its own handler
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, interrupted.set)
    sim = Simulator(host="127.0.0.1", port=sim_port, domain=SIM_DOMAIN, report_to=inbound, followup_delay=0.5)
    await sim.start()
    cfg = config.replace(
        database_url=database_url, http=http, inbound_smtp=inbound, public_url=url,
        transport_map={SIM_DOMAIN: f"127.0.0.1:{sim.port}"}, retry_schedule=(2.0, 4.0, 8.0),
        max_queue_age=30.0, smtp_timeout=10.0, worker=True, inbound=True,
    )
    stop = threading.Event()
    server: asyncio.Task[None] | None = None
    try:
        store = open_store(cfg.database_url)
        who = seed(store)
        ready = asyncio.Event()
        server = asyncio.create_task(run_roles(cfg, ("api", "worker", "inbound"), store, ready=ready))
        started = asyncio.create_task(ready.wait())
        halted = asyncio.create_task(interrupted.wait())
        await asyncio.wait([server, started, halted], return_when=asyncio.FIRST_COMPLETED)
        if server.done() or halted.done():
            started.cancel()
            halted.cancel()
            if server.done():
                server.result()  # raises what stopped it
            return
        halted.cancel()
        where = f"database {db}" if db is not None else f"database from MAILTRACK_DATABASE_URL ({_safe(database_url)})"
        echo(f"mailtrack demo running at {url}  ({where}, simulator on 127.0.0.1:{sim.port})")
        echo(f"URL: {url}/emails")
        echo(f"Sign in: {who['email']} / {who['password']}")
        echo(f"API key: {who['key']}")
        echo(f"Task notes: {url}/tasks/T-1042   Stop with Ctrl-C.")
        sender = asyncio.create_task(asyncio.to_thread(send_all, url, who["key"], mix(), stop, echo))
        reporter = asyncio.create_task(report_progress(store, echo))
        done, _ = await asyncio.wait([server], timeout=duration)
        if not done:
            echo(f"demo: {duration:g}s are up, stopping")
        stop.set()
        reporter.cancel()
        with contextlib.suppress(Exception):
            echo(f"demo: {await sender} emails submitted")
    finally:
        stop.set()
        if server is not None and not server.done():
            server.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await server
        await sim.stop()
        echo("demo: stopped")


def _safe(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)
