"""Checks of the published records with dnspython; every outcome is a result, never an exception.

    ok       the record is there with the value we asked for
    missing  no such name or no record of that type (NXDOMAIN, NODATA)
    wrong    a record is there but says something else (another key, no include, another target)
    error    the lookup itself failed (timeout, SERVFAIL): try again later
"""

from __future__ import annotations

from dataclasses import dataclass

import dns.exception
import dns.resolver

from ..config import parse_hostport

OK, MISSING, WRONG, ERROR = "ok", "missing", "wrong", "error"


@dataclass(frozen=True)
class Result:
    status: str
    detail: str


def make_resolver(address: str = "", lifetime: float = 5.0) -> dns.resolver.Resolver:
    """The system resolver, or the server at ``HOST:PORT`` (MAILTRACK_DNS_RESOLVER)."""
    if not address:
        r = dns.resolver.Resolver()
    else:
        host, port = parse_hostport(address)
        r = dns.resolver.Resolver(configure=False)
        r.nameservers = [host]
        r.port = port
    r.lifetime = lifetime
    r.timeout = min(lifetime, 2.0)
    return r


def _lookup(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list[str] | Result:
    try:
        answer = resolver.resolve(name, rdtype, raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return Result(MISSING, f"{name} does not exist")
    except dns.exception.DNSException as e:
        return Result(ERROR, f"{rdtype} lookup of {name} failed: {e or type(e).__name__}")
    values: list[str] = []
    for rr in answer.rrset or []:
        if rdtype == "TXT":
            values.append(b"".join(rr.strings).decode("utf-8", "replace"))
        elif rdtype == "CNAME":
            values.append(rr.target.to_text().rstrip(".").lower())
        else:
            values.append(rr.to_text())
    if not values:
        return Result(MISSING, f"{name} has no {rdtype} record")
    return values


def _tags(record: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in record.split(";"):
        k, sep, v = part.partition("=")
        if sep:
            out[k.strip().lower()] = "".join(v.split())
    return out


def dkim(resolver: dns.resolver.Resolver, name: str, public_key: str) -> Result:
    found = _lookup(resolver, name, "TXT")
    if isinstance(found, Result):
        return found
    keys = [_tags(v).get("p") for v in found if "p" in _tags(v)]
    if public_key in keys:
        return Result(OK, "the published key matches")
    if not keys:
        return Result(WRONG, f"{name} has TXT records but none is a DKIM key (no p=)")
    return Result(WRONG, f"{name} publishes another key than this selector's")


def spf(resolver: dns.resolver.Resolver, domain: str, mechanism: str) -> Result:
    found = _lookup(resolver, domain, "TXT")
    if isinstance(found, Result):
        return Result(MISSING, f"{domain} has no SPF record") if found.status == MISSING else found
    records = [v for v in found if v.lower().startswith("v=spf1")]
    if not records:
        return Result(MISSING, f"{domain} has no SPF record")
    if len(records) > 1:
        return Result(WRONG, f"{domain} has {len(records)} SPF records; receivers treat that as an error (RFC 7208)")
    if mechanism.lower() in records[0].lower().split():
        return Result(OK, f"the SPF record includes {mechanism}")
    return Result(WRONG, f"the SPF record of {domain} does not include {mechanism}")


def dmarc(resolver: dns.resolver.Resolver, domain: str) -> Result:
    name = f"_dmarc.{domain}"
    found = _lookup(resolver, name, "TXT")
    if isinstance(found, Result):
        return found
    if any(v.replace(" ", "").lower().startswith("v=dmarc1") for v in found):
        return Result(OK, "a DMARC policy is published")
    return Result(WRONG, f"{name} has TXT records but no v=DMARC1 policy")


def cname(resolver: dns.resolver.Resolver, name: str, target: str) -> Result:
    found = _lookup(resolver, name, "CNAME")
    if isinstance(found, Result):
        return found
    if target.lower() in found:
        return Result(OK, f"{name} points at {target}")
    return Result(WRONG, f"{name} points at {found[0]}, not {target}")
