"""Delivery as named steps, run for every claimed recipient:

    compose   stored email + recipient → Outgoing (the email's cached template, tokens filled in)
    sign      Outgoing → Outgoing with a DKIM-Signature when the From domain's key checks out
    route     recipient domain → Route (transport map, smarthost, MX) or RouteFailure
    send      Outgoing + Route → a Job for the Transport (SMTP, injected), grouped by provider
    classify  Reply | RouteFailure | our own error → Finished (status, reason, next attempt)
    record    a batch of Finished → the store, one transaction, through the status-change core

The steps know nothing about concurrency: the ``Worker`` claims, leases, runs compose+sign (in the
signing processes for a batch with signed mail — ``prepare_remote`` — else in a thread), awaits
route, hands jobs to the transport and groups results for ``record``. The transport is injected
(``transport=`` a factory taking the reply callback), like the resolver, so a test can put any sender
at that seam; the default is ``smtp.Sender``.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol

from sqlalchemy import Connection

from ..compose import Composer, EmailSource, Outgoing
from ..config import Config
from ..store import delivery as dstore
from . import outcome
from .routing import Resolver, Route, RouteFailure, Router
from .smtp import Job, Reply, Sender
from .throttle import Throttle

log = logging.getLogger("mailtrack.delivery")

OnReply = Callable[[Job, Reply], None]


class Transport(Protocol):
    """What the worker needs from a sender: ``on_reply(job, reply)`` once for every job submitted."""

    def submit(self, job: Job) -> None: ...

    def drain_queued(self) -> list[Job]: ...

    async def close(self, grace: float = 0.0) -> None: ...


TransportFactory = Callable[[OnReply], Transport]


class Signer(Protocol):
    """Signs a composed message for its From domain; returns it unchanged when that domain has no usable key."""

    def sign(self, email: EmailSource, out: Outgoing) -> Outgoing: ...

    def return_path(self, email: EmailSource) -> str | None: ...

    def sign_many(self, items: list[tuple[EmailSource, Outgoing]]) -> list[Outgoing]: ...

    def prepare_many(self, setup: tuple[str, str, str, tuple[str, ...]], items: list[tuple[EmailSource, str, str]]
                     ) -> list[tuple[list[int], Future[list[tuple[str, bytes] | str]]]] | None: ...

    def warm(self) -> None: ...

    def close(self) -> None: ...


Prepared = list[tuple[list[dstore.Claimed], "Future[list[tuple[str, bytes] | str]]"]]


def smtp_transport(config: Config, throttle: Throttle | None = None) -> TransportFactory:
    """The real transport: SMTP with reused connections under the configured caps and provider limits."""

    def make(on_reply: OnReply) -> Transport:
        return Sender(on_reply=on_reply, timeout=config.smtp_timeout, helo=config.bounce_domain,
                      max_connections=config.max_connections, max_per_host=config.max_connections_per_host,
                      require_tls=config.require_tls, throttle=throttle)

    return make


class Pipeline:
    """The named steps, bound to one configuration."""

    def __init__(self, config: Config, *, resolver: Resolver | None = None, signer: Signer | None = None,
                 rng: random.Random | None = None) -> None:
        self.config = config
        self.composer = Composer(secret=config.secret_key, bounce_domain=config.bounce_domain,
                                 public_url=config.public_url,
                                 exclude_domains=getattr(config, "tracking_exclude_domains", ()))
        self.router = Router(config, resolver)
        self.signer = signer
        self.rng = rng

    # --- compose → sign (CPU work; the worker runs these in a thread) ------------------------

    def compose(self, email: EmailSource, c: dstore.Claimed) -> Outgoing:
        """One recipient's message; the envelope sender is the aligned return path when the domain has one."""
        host = self.signer.return_path(email) if self.signer is not None else None
        return self.composer.compose(email, c.id, c.address, return_path_host=host)

    def sign(self, email: EmailSource, out: Outgoing) -> Outgoing:
        """DKIM-sign for the From domain when it has a verified key; otherwise the message goes out as is."""
        if self.signer is None:
            return out
        return self.signer.sign(email, out)

    def prepare(self, email: EmailSource, c: dstore.Claimed) -> Outgoing:
        """compose, then sign."""
        return self.sign(email, self.compose(email, c))

    def sign_batch(self, items: list[tuple[EmailSource, Outgoing]]) -> list[Outgoing]:
        """``sign`` for many messages at once (signatures spread over processes when there are many)."""
        if self.signer is None:
            return [o for _, o in items]
        return self.signer.sign_many(items)

    def prepare_remote(self, items: list[tuple[EmailSource, dstore.Claimed]]) -> Prepared | None:
        """compose → sign for a batch in the signing processes: per chunk, its recipients and the future
        list of their messages (or, per recipient, why it could not be built). None: do it here instead."""
        if self.signer is None:
            return None
        c = self.composer
        setup = (c.secret, c.bounce_domain, c.public_url, c.exclude_domains)
        chunks = self.signer.prepare_many(setup, [(email, r.id, r.address) for email, r in items])
        if chunks is None:
            return None
        return [([items[i][1] for i in idx], future) for idx, future in chunks]

    def warm(self) -> None:
        """Start what the first batch would otherwise wait for (the signing processes)."""
        if self.signer is not None:
            self.signer.warm()

    def close(self) -> None:
        if self.signer is not None:
            self.signer.close()

    # --- route → send (on the event loop) ----------------------------------------------------

    async def route(self, domain: str) -> Route | RouteFailure:
        """Where mail for ``domain`` goes; a resolver bug counts as a temporary DNS failure."""
        try:
            return await self.router.route(domain)
        except Exception as e:
            log.exception("routing %s failed", domain)
            return RouteFailure("deferred", f"{domain}: routing failed ({e})")

    @staticmethod
    def send(transport: Transport, c: dstore.Claimed, out: Outgoing, route: Route) -> None:
        """Queue the message on the transport; its reply comes back through ``on_reply``."""
        transport.submit(Job(out, route, c))

    # --- classify → record -------------------------------------------------------------------

    def classify(self, c: dstore.Claimed, result: Reply | RouteFailure | str, now: float) -> dstore.Finished:
        """The status a reply, a routing failure or our own error (a string) means for the recipient."""
        if isinstance(result, Reply):
            return outcome.from_reply(c, result, self.config, now, self.rng)
        if isinstance(result, RouteFailure):
            return outcome.from_route_failure(c, result, self.config, now, self.rng)
        return outcome.from_error(c, result, self.config, now)

    @staticmethod
    def record(conn: Connection, owner: str, batch: list[dstore.Finished]) -> None:
        """Write a batch of outcomes in the caller's transaction (the status-change core does the rest)."""
        dstore.finish(conn, owner, batch)
