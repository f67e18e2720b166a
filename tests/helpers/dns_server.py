"""A real DNS server on loopback (dnslib, UDP, port 0) serving a zone the test edits while it runs."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import CNAME, MX, QTYPE, RCODE, RR, TXT, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSServer


class Zone(BaseResolver):  # type: ignore[misc]
    """Answers from ``records``: (lower-case name, type) → list of values; unknown names are NXDOMAIN."""

    def __init__(self) -> None:
        self.records: dict[tuple[str, str], list[str]] = {}
        self.lock = threading.Lock()

    def set(self, name: str, rtype: str, *values: str) -> None:
        with self.lock:
            self.records[(name.lower().rstrip("."), rtype)] = list(values)

    def clear(self, name: str, rtype: str) -> None:
        with self.lock:
            self.records.pop((name.lower().rstrip("."), rtype), None)

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        name = str(request.q.qname).lower().rstrip(".")
        qtype = QTYPE[request.q.qtype]
        with self.lock:
            known = any(n == name for n, _ in self.records)
            values = list(self.records.get((name, qtype), []))
            cname = self.records.get((name, "CNAME"))
        if cname and qtype != "CNAME":
            reply.add_answer(RR(name, QTYPE.CNAME, rdata=CNAME(cname[0]), ttl=1))
            return reply
        for v in values:
            reply.add_answer(RR(name, getattr(QTYPE, qtype), rdata=_rdata(qtype, v), ttl=1))
        if not known:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _rdata(qtype: str, value: str) -> Any:
    if qtype == "TXT":
        # long TXT values are split into 255-octet strings, as a DNS provider's UI would publish them
        return TXT([value[i:i + 255].encode() for i in range(0, len(value), 255)] or [b""])
    if qtype == "MX":
        pref, host = value.split()
        return MX(host, int(pref))
    if qtype == "CNAME":
        return CNAME(value)
    return A(value)


@contextmanager
def dns_server() -> Iterator[tuple[Zone, str]]:
    """(zone, "127.0.0.1:PORT") of a running server."""
    zone = Zone()
    server = DNSServer(zone, port=0, address="127.0.0.1", logger=_Quiet())
    server.start_thread()
    try:
        yield zone, f"127.0.0.1:{server.server.server_address[1]}"
    finally:
        server.stop()
        server.server.server_close()


class _Quiet:
    def __getattr__(self, name: str) -> Any:
        return lambda *a, **k: None
