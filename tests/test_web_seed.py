"""Seed data for the web tests: one email with a recipient in every status, plus engagement events."""

from __future__ import annotations

import time
from typing import Any

from argon2 import PasswordHasher
from sqlalchemy import update

from mailtrack.store import accounts, suppressions
from mailtrack.store.db import Store
from mailtrack.store.schema import recipients
from mailtrack.store.submit import NewEmail, NewRecipient, submit
from mailtrack.store.transitions import Change, record

XSS = "<script>alert(1)</script>"
PASSWORD = "correct horse battery"
# Cheap parameters keep the tests fast; verification reads the parameters from the hash itself.
_FAST = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


def add_user(store: Store, account: str = "acme", email: str = "ops@acme.test", password: str = PASSWORD) -> int:
    with store.write() as conn:
        acct = accounts.get_or_create_account(conn, account)
        accounts.add_user(conn, acct, email, _FAST.hash(password))
    return acct


def seed_every_status(store: Store, acct: int, reference: str = "T-7") -> tuple[str, dict[str, str]]:
    """An email whose seven recipients are in the seven statuses; returns (email id, status → recipient id)."""
    statuses = ["creating", "spooled", "sent", "deferred", "soft_bounce", "hard_bounce", "rejected"]
    with store.write() as conn:
        # an earlier seed in the same account suppressed its hard bounce and complaint (the core's effects)
        listed = suppressions.suppressed_among(conn, acct, {f"{s.replace('_', '-')}@example.test" for s in statuses})
        for address in listed:
            suppressions.remove(conn, acct, address)
        suppressions.add(conn, acct, "rejected@example.test", "unsubscribed", "manual")
        rcpts = [NewRecipient("", f"{s.replace('_', '-')}@example.test", kind)
                 for s, kind in zip(statuses, ["to", "to", "to", "cc", "cc", "bcc", "bcc"], strict=True)]
        new = NewEmail(from_addr="ops@acme.test", recipients=rcpts, subject=f"Task sheet {reference} {XSS}",
                       html="<p>Hello <a href='https://portal.test/x'>x</a></p>",
                       source_type="task_sheet", source_reference=reference, to_header="", cc_header="")
        [(eid, _)] = submit(conn, acct, [new])
        ids = {r["address"].split("@")[0].replace("-", "_"): r["id"]
               for r in conn.execute(recipients.select().where(recipients.c.email_id == eid)).mappings()}
        t = time.time()
        # 'creating' is only ever entered at submission (the transition table has no way back to it)
        conn.execute(update(recipients).where(recipients.c.id == ids["creating"])
                     .values(status="creating", next_attempt_at=None))
        changes: list[Change] = [
            Change(ids["sent"], "sent", reason="250 2.0.0 Ok: queued as 4Bx9"),
            Change(ids["deferred"], "deferred", reason="451 4.7.1 Greylisted, try again in 5 minutes",
                   fields={"next_attempt_at": t + 300, "attempts": 1}),
            Change(ids["soft_bounce"], "soft_bounce", reason="552 5.2.2 Mailbox full"),
            Change(ids["hard_bounce"], "hard_bounce", reason=f"550 5.1.1 {XSS} user unknown"),
            Change(ids["sent"], "opened", data={"class": "human", "user_agent": "<img src=x onerror=alert(2)>"},
                   fields={"opens_total": 3, "opens_human": 1, "first_opened_at": t}),
            Change(ids["sent"], "clicked", data={"class": "human", "url": "https://portal.test/x"},
                   fields={"clicks_total": 1, "clicks_human": 1, "first_clicked_at": t}),
            Change(ids["sent"], "complained", reason="abuse report (ARF)", fields={"complained": True}),
        ]
        for ch in changes:
            assert record(conn, ch).value == "applied", ch
    return eid, ids


def submit_simple(store: Store, acct: int, n: int, **over: Any) -> list[str]:
    with store.write() as conn:
        batch = []
        for i in range(n):
            kw: dict[str, Any] = {"from_addr": "ops@acme.test", "recipients": [NewRecipient("", f"r{i}@example.test", "to")],
                                  "subject": f"Invoice INV-{i:04d}", "text": "Hello", "source_type": "invoice",
                                  "source_reference": f"INV-{i:04d}"}
            kw.update(over)
            batch.append(NewEmail(**kw))
        return [eid for eid, _ in submit(conn, acct, batch)]
