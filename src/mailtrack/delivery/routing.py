"""Where mail for a domain goes: the transport map, the smarthost, or the domain's MX hosts.

Order: an explicit transport-map entry for the domain, then the smarthost, then the map's ``*``
entry, then MX. MX follows RFC 5321 §5.1 (no MX → the domain's own A/AAAA) and RFC 7505 (a
null MX ``0 .`` means the domain accepts no mail). The resolver is the network edge and can be
replaced (tests pass a stub); the decisions made from its answers are plain functions here.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import dns.exception
import dns.resolver

from ..config import Config, parse_hostport

SMTP_PORT = 25
OK_TTL = 300.0
FAIL_TTL = 30.0


@dataclass(frozen=True)
class Route:
    """Hosts to try in order; ``key`` names the connection pool they share."""

    key: str
    hosts: tuple[tuple[str, int], ...]
    auth: tuple[str, str] | None = None
    verify_tls: bool = False


@dataclass(frozen=True)
class RouteFailure:
    """No route: either for good (hard_bounce) or for now (deferred)."""

    status: Literal["hard_bounce", "deferred"]
    reason: str


class Resolver(Protocol):
    async def resolve(self, qname: str, rdtype: str) -> Iterable[Any]: ...


def static_route(config: Config, domain: str) -> Route | None:
    """The configured route for ``domain``; None means look up its MX."""
    tmap = config.transport_map or {}
    target = tmap.get(domain.lower())
    if target is None and config.smarthost:
        host, port = parse_hostport(config.smarthost)
        auth = (config.smarthost_user, config.smarthost_password) if config.smarthost_user else None
        return Route(f"smarthost:{host}:{port}", ((host, port),), auth=auth, verify_tls=True)
    if target is None:
        target = tmap.get("*", "mx")
    if target.lower() == "mx":
        return None
    host, port = parse_hostport(target)
    return Route(f"{host}:{port}", ((host, port),))


def mx_decision(domain: str, records: Iterable[tuple[int, str]]) -> Route | RouteFailure:
    """Route from MX records (preference, exchange); an empty list means 'no MX', use the domain itself."""
    recs = [(int(p), x.rstrip(".").lower()) for p, x in records]
    real = [(p, x) for p, x in recs if x]
    if recs and not real:
        return RouteFailure("hard_bounce", f"{domain}: domain does not accept mail (null MX)")
    if not real:
        return Route(f"mx:{domain}", ((domain, SMTP_PORT),))
    seen: list[str] = []
    for _, host in sorted(real):
        if host not in seen:
            seen.append(host)
    return Route("mx:" + ",".join(seen), tuple((h, SMTP_PORT) for h in seen))


def _temporary(domain: str, what: str, e: BaseException) -> RouteFailure:
    detail = type(e).__name__ if not str(e) else str(e)
    return RouteFailure("deferred", f"{domain}: {what} lookup failed temporarily ({detail})")


class Router:
    """Routes per domain, with MX answers cached and concurrent lookups of one domain shared."""

    def __init__(self, config: Config, resolver: Resolver | None = None) -> None:
        self.config = config
        self._resolver = resolver
        self._cache: dict[str, tuple[float, Route | RouteFailure]] = {}
        self._pending: dict[str, asyncio.Future[Route | RouteFailure]] = {}

    def _get_resolver(self) -> Resolver:
        if self._resolver is None:
            import dns.asyncresolver

            r = dns.asyncresolver.Resolver()
            r.lifetime = min(self.config.smtp_timeout, 30.0)
            self._resolver = r
        assert self._resolver is not None
        return self._resolver

    async def route(self, domain: str) -> Route | RouteFailure:
        domain = domain.lower().rstrip(".")
        fixed = static_route(self.config, domain)
        if fixed is not None:
            return fixed
        hit = self._cache.get(domain)
        if hit is not None and hit[0] > time.monotonic():
            return hit[1]
        pending = self._pending.get(domain)
        if pending is not None:
            return await asyncio.shield(pending)
        fut: asyncio.Future[Route | RouteFailure] = asyncio.get_running_loop().create_future()
        self._pending[domain] = fut
        try:
            result = await self.lookup(domain)
            ttl = FAIL_TTL if isinstance(result, RouteFailure) and result.status == "deferred" else OK_TTL
            self._cache[domain] = (time.monotonic() + ttl, result)
            fut.set_result(result)
            return result
        except BaseException as e:
            fut.set_exception(e)
            fut.exception()  # mark retrieved: waiters re-raise it themselves
            raise
        finally:
            del self._pending[domain]

    async def lookup(self, domain: str) -> Route | RouteFailure:
        """Ask DNS: MX first, then (no MX) the domain's own address records."""
        resolver = self._get_resolver()
        try:
            answer = await resolver.resolve(domain, "MX")
            return mx_decision(domain, [(r.preference, r.exchange.to_text()) for r in answer])
        except dns.resolver.NoAnswer:
            pass
        except dns.resolver.NXDOMAIN:
            return RouteFailure("hard_bounce", f"{domain}: domain does not exist (NXDOMAIN)")
        except dns.exception.DNSException as e:
            return _temporary(domain, "MX", e)
        for rdtype in ("A", "AAAA"):
            try:
                if list(await resolver.resolve(domain, rdtype)):
                    return mx_decision(domain, [])
            except dns.resolver.NoAnswer:
                continue
            except dns.resolver.NXDOMAIN:
                return RouteFailure("hard_bounce", f"{domain}: domain does not exist (NXDOMAIN)")
            except dns.exception.DNSException as e:
                return _temporary(domain, rdtype, e)
        return RouteFailure("hard_bounce", f"{domain}: domain has no MX and no address records")


