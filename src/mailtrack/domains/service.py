"""What the CLI, the API and the page do with sending domains: add, show, check, rotate, remove.

Key life cycle (one domain may have several selectors published at once):

    pending ──record checks out──▶ active (signs) ──rotate + new key checks out──▶ retiring
                                                                                     │ DKIM_RETIRE_AFTER
                                                                                     ▼
                                                                                  deleted
An active key whose record disappears goes back to pending: signing with a key no receiver can
find would fail DKIM, which is worse than not signing.
"""

from __future__ import annotations

import time
from typing import Any, TypedDict

import dns.resolver

from ..config import Config
from ..errors import Conflict, InputError, NotFound
from ..store import domains as dstore
from ..store.db import Store
from . import dnscheck, keys
from .names import normalize


class Record(TypedDict):
    type: str
    name: str
    value: str
    purpose: str
    status: str  # unchecked, ok, missing, wrong, error
    detail: str


class DomainView(TypedDict):
    domain: str
    account: str
    return_path: str | None
    signing: bool
    selector: str | None
    records: list[Record]
    checked_at: float | None


def spf_mechanism(config: Config) -> str:
    return config.spf_mechanism or f"a:{config.bounce_domain}"


def _check_key(record_name: str) -> str:
    return f"TXT {record_name}"


def records(d: dstore.SendingDomain, config: Config) -> list[Record]:
    """The records to publish, each with the state of its last check."""
    checks = d.checks
    out: list[Record] = []

    def add(rtype: str, name: str, value: str, purpose: str) -> None:
        found = checks.get(f"{rtype} {name}", {})
        out.append(Record(type=rtype, name=name, value=value, purpose=purpose,
                          status=found.get("status", "unchecked"), detail=found.get("detail", "not checked yet")))

    for k in d.keys:
        if k.state == "retired":
            continue
        role = {"active": "signing now", "pending": "signs once published",
                "retiring": "old key, kept published until it is retired"}.get(k.state, k.state)
        add("TXT", f"{k.selector}._domainkey.{d.domain}", keys.dkim_record(k.public_key),
            f"DKIM public key, selector {k.selector} ({role})")
    mech = spf_mechanism(config)
    add("TXT", d.domain, f"v=spf1 {mech} ~all",
        f"SPF: add '{mech}' to the domain's one SPF record (do not publish a second one)")
    add("TXT", f"_dmarc.{d.domain}", f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{d.domain}",
        "DMARC to start with: monitor only (p=none), aggregate reports to rua; tighten once reports are clean")
    if d.return_path:
        add("CNAME", d.return_path, config.bounce_domain,
            "aligned return path: bounces come back to mailtrack, and SPF is checked on this host")
    return out


def view(d: dstore.SendingDomain, config: Config) -> DomainView:
    active = next((k for k in d.keys if k.state == "active"), None)
    return DomainView(domain=d.domain, account=d.account, return_path=d.return_path, signing=active is not None,
                      selector=active.selector if active else None, records=records(d, config),
                      checked_at=d.checked_at)


def _owned(conn: Any, domain: str, account_id: int | None) -> dstore.SendingDomain:
    d = dstore.find(conn, domain)
    if d is None or (account_id is not None and d.account_id != account_id):
        raise NotFound(f"no sending domain {domain!r} in this account", field="domain")
    return d


def _new_key(conn: Any, config: Config, d_id: int, domain: str, selector: str | None, taken: set[str]) -> str:
    if selector is not None:
        sel = selector.strip().lower()
        if not sel or len(sel) > 63 or not all(p and p.replace("-", "").isalnum() and p.isascii()
                                                for p in sel.split(".")):
            raise InputError(f"{selector!r} is not a valid selector (letters, digits, hyphens)", field="selector")
        if sel in taken:
            raise Conflict(f"selector {sel!r} is already used by {domain}", field="selector")
    else:
        sel = keys.new_selector()
        while sel in taken:
            sel = keys.new_selector()
    key = keys.generate()
    dstore.add_key(conn, d_id, sel, keys.encrypt(key, config.secret_key, domain), keys.public_value(key))
    return sel


def add(store: Store, config: Config, account_id: int, domain: str, *, return_path: str | None = None,
        selector: str | None = None) -> DomainView:
    """Claim ``domain`` for the account with a new DKIM key; adding one's own domain again changes nothing."""
    name = normalize(domain)
    rp = normalize(return_path, field="return_path") if return_path else None
    if rp is not None and rp != name and not rp.endswith("." + name):
        raise InputError(f"the return path {rp!r} must be {name} or a subdomain of it, or SPF does not align",
                         field="return_path")
    with store.write() as conn:
        existing = dstore.find(conn, name)
        if existing is not None:
            if existing.account_id != account_id:
                raise Conflict(f"{name} is already a sending domain of another account", field="domain")
            return view(existing, config)
        d_id = dstore.create(conn, account_id, name, rp)
        _new_key(conn, config, d_id, name, selector, set())
        d = dstore.find(conn, name)
    assert d is not None
    return view(d, config)


def get(store: Store, config: Config, domain: str, account_id: int | None = None) -> DomainView:
    with store.read() as conn:
        return view(_owned(conn, normalize(domain), account_id), config)


def listing(store: Store, config: Config, account_id: int | None = None) -> list[DomainView]:
    with store.read() as conn:
        return [view(d, config) for d in dstore.listing(conn, account_id)]


def rotate(store: Store, config: Config, domain: str, account_id: int | None = None,
           selector: str | None = None) -> DomainView:
    """A new selector, published next to the current one; signing switches once it checks out."""
    name = normalize(domain)
    with store.write() as conn:
        d = _owned(conn, name, account_id)
        if any(k.state == "pending" for k in d.keys) and any(k.state == "active" for k in d.keys):
            raise Conflict(f"{name} already has a new key waiting to be published; publish and check it first",
                           field="domain")
        _new_key(conn, config, d.id, name, selector, {k.selector for k in d.keys})
        d = _owned(conn, name, account_id)
    return view(d, config)


def remove(store: Store, domain: str, account_id: int | None = None) -> None:
    with store.write() as conn:
        dstore.remove(conn, _owned(conn, normalize(domain), account_id).id)


def check(store: Store, config: Config, domain: str, account_id: int | None = None,
          resolver: dns.resolver.Resolver | None = None) -> DomainView:
    """Look every record up, then move keys along their life cycle."""
    name = normalize(domain)
    with store.read() as conn:
        d = _owned(conn, name, account_id)
    res = resolver or dnscheck.make_resolver(config.dns_resolver)
    results: dict[str, dnscheck.Result] = {}
    for k in d.keys:
        rname = f"{k.selector}._domainkey.{d.domain}"
        results[_check_key(rname)] = dnscheck.dkim(res, rname, k.public_key)
    results[f"TXT {d.domain}"] = dnscheck.spf(res, d.domain, spf_mechanism(config))
    results[f"TXT _dmarc.{d.domain}"] = dnscheck.dmarc(res, d.domain)
    if d.return_path:
        results[f"CNAME {d.return_path}"] = dnscheck.cname(res, d.return_path, config.bounce_domain)
    now = time.time()
    with store.write() as conn:
        current = _owned(conn, name, account_id)
        _advance(conn, current, results, config, now)
        dstore.save_checks(conn, current.id, {k: {"status": r.status, "detail": r.detail}
                                              for k, r in results.items()}, now)
        d = _owned(conn, name, account_id)
    return view(d, config)


def _advance(conn: Any, d: dstore.SendingDomain, results: dict[str, dnscheck.Result], config: Config,
             now: float) -> None:
    def status(k: dstore.DkimKey) -> str:
        r = results.get(_check_key(f"{k.selector}._domainkey.{d.domain}"))
        return r.status if r else dnscheck.ERROR

    for k in d.keys:
        if k.state == "retiring" and k.retire_at is not None and k.retire_at <= now:
            dstore.delete_key(conn, k.id)
        elif k.state == "active" and status(k) in (dnscheck.MISSING, dnscheck.WRONG):
            dstore.set_key_state(conn, k.id, "pending")
    ready = [k for k in d.keys if k.state == "pending" and status(k) == dnscheck.OK]
    if not ready:
        return
    newest = max(ready, key=lambda k: (k.created_at, k.id))
    for k in d.keys:
        if k.state == "active" or (k.state == "pending" and k is not newest and status(k) == dnscheck.OK):
            dstore.set_key_state(conn, k.id, "retiring", retire_at=now + config.dkim_retire_after)
    dstore.set_key_state(conn, newest.id, "active", activated_at=now)


def recheck_all(store: Store, config: Config) -> int:
    """Check every sending domain once (the periodic re-check); returns how many were checked."""
    with store.read() as conn:
        names = [d.domain for d in dstore.listing(conn)]
    for n in names:
        check(store, config, n)
    return len(names)
