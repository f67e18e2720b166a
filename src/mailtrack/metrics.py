"""Prometheus metrics, in prometheus-client's multiprocess mode.

Every process that shares ``PROMETHEUS_MULTIPROC_DIR`` (the service, its hit writer, workers on
the same machine started with the same directory) writes its counters there, and ``GET /metrics``
adds them up. When the variable is not set, the first process that imports this module creates a
directory and exports it, so the processes it starts report into the same place.

Counted where things happen (labels are small fixed sets — never an account or an address):

    mailtrack_submitted_recipients_total{source_type}       submission
    mailtrack_status_changes_total{status}                  delivery results, operator drops
    mailtrack_delivery_attempts_total{outcome,destination_group}
    mailtrack_smtp_transaction_seconds                      one message over an open connection
    mailtrack_inbound_reports_total{kind}
    mailtrack_tracking_hits_total{kind,class}               hits written by the hit writer

Read from the database at scrape time (``ops/scrape.py``): ``mailtrack_queue_depth{state}``,
``mailtrack_queue_oldest_age_seconds``, ``mailtrack_workers_alive``. This module imports nothing
else from the package, so every layer (the store included) can count.
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

_ENV = "PROMETHEUS_MULTIPROC_DIR"
if not os.environ.get(_ENV):  # must be set before prometheus_client is imported
    _dir = tempfile.mkdtemp(prefix="mailtrack-metrics-")
    os.environ[_ENV] = _dir
    _creator = os.getpid()

    @atexit.register
    def _cleanup() -> None:
        if os.getpid() == _creator:  # not in a forked child: the parent still reads the directory
            shutil.rmtree(_dir, ignore_errors=True)

# the directory must be chosen first
from prometheus_client import Counter, Histogram  # noqa: E402  # noqa: E402

SOURCE_TYPES = frozenset({"task_sheet", "invoice", "purchase_order", "event_message"})
STATUSES = frozenset({"creating", "spooled", "sent", "deferred", "soft_bounce", "hard_bounce", "rejected"})
INBOUND_KINDS = frozenset({"bounce", "delay", "complaint", "autoreply", "unsubscribe", "unknown"})

SUBMITTED = Counter("mailtrack_submitted_recipients_total", "Recipients accepted for delivery", ["source_type"])
STATUS_CHANGES = Counter("mailtrack_status_changes_total", "Recipient status changes recorded", ["status"])
ATTEMPTS = Counter("mailtrack_delivery_attempts_total", "Delivery attempts by outcome and destination group",
                   ["outcome", "destination_group"])
SMTP_SECONDS = Histogram("mailtrack_smtp_transaction_seconds", "One message's SMTP transaction (MAIL to the reply "
                         "after DATA)", buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300))
INBOUND = Counter("mailtrack_inbound_reports_total", "Inbound reports by kind", ["kind"])
HITS = Counter("mailtrack_tracking_hits_total", "Tracking hits recorded by kind (opened/clicked) and class",
               ["kind", "class"])

# A few big mailbox providers get their own group; every other domain is "other" (bounded labels).
_GROUPS = {
    "gmail.com": "google", "googlemail.com": "google",
    "outlook.com": "microsoft", "hotmail.com": "microsoft", "live.com": "microsoft", "msn.com": "microsoft",
    "yahoo.com": "yahoo", "ymail.com": "yahoo", "aol.com": "yahoo",
    "icloud.com": "apple", "me.com": "apple", "mac.com": "apple",
    "gmx.de": "gmx", "gmx.net": "gmx", "web.de": "gmx", "mail.ru": "mailru", "yandex.ru": "yandex",
}


def destination_group(domain: str) -> str:
    """A bounded label for a recipient domain."""
    return _GROUPS.get(domain.lower(), "other")


def _bounded(value: str | None, allowed: frozenset[str]) -> str:
    return value if value in allowed else "other"


def submitted(source_type: str | None, n: int = 1) -> None:
    SUBMITTED.labels(_bounded(source_type, SOURCE_TYPES) if source_type else "none").inc(n)


def status_changed(status: str, n: int = 1) -> None:
    STATUS_CHANGES.labels(_bounded(status, STATUSES)).inc(n)


def attempted(outcome: str, domain: str) -> None:
    ATTEMPTS.labels(_bounded(outcome, STATUSES), destination_group(domain)).inc()


def inbound_report(kind: str | None) -> None:
    INBOUND.labels(_bounded(kind or "unknown", INBOUND_KINDS)).inc()


def tracking_hit(kind: str, cls: str, n: int = 1) -> None:
    HITS.labels(_bounded(kind, frozenset({"opened", "clicked"})),
                _bounded(cls, frozenset({"human", "apple_privacy", "image_proxy", "scanner", "unknown"}))).inc(n)
