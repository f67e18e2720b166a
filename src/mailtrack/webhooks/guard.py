"""The SSRF guard: webhook URLs must be http(s) and resolve only to public addresses.

Checked when an endpoint is created or changed, and again before every POST (the address a name
resolves to can change: DNS rebinding); the POST then goes to the address that was checked.
``MAILTRACK_WEBHOOK_ALLOW_PRIVATE=true`` lifts the address check (tests, single-host setups).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import urlsplit


class UnsafeURL(ValueError):
    """The URL is not one mailtrack will POST to; the message says why."""


@dataclass(frozen=True)
class Target:
    scheme: str
    host: str  # as written in the URL (Host header, TLS server name)
    port: int


def parse(url: str) -> Target:
    """Scheme, host and port of an acceptable URL, or UnsafeURL."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError as e:
        raise UnsafeURL(f"not a valid URL: {e}") from e
    if parts.scheme not in ("http", "https"):
        raise UnsafeURL("only http:// and https:// URLs are allowed")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    if parts.username or parts.password:
        raise UnsafeURL("credentials in the URL are not allowed; the payload is signed instead")
    return Target(parts.scheme, parts.hostname, port or (443 if parts.scheme == "https" else 80))


def refused(ip: str) -> str | None:
    """Why an address may not be posted to (loopback, private …), or None when it is public."""
    addr = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        addr = addr.ipv4_mapped
    for what in ("loopback", "private", "link_local", "multicast", "reserved", "unspecified"):
        if getattr(addr, f"is_{what}"):
            return what.replace("_", "-")
    if not addr.is_global:
        return "not globally routable"
    return None


def _checked(target: Target, infos: list[str], allow_private: bool) -> list[str]:
    if not infos:
        raise UnsafeURL(f"{target.host} does not resolve")
    if not allow_private:
        for ip in infos:
            why = refused(ip)
            if why is not None:
                raise UnsafeURL(f"{target.host} resolves to a {why} address ({ip}); set "
                                "MAILTRACK_WEBHOOK_ALLOW_PRIVATE=true to allow it")
    return infos


def check(url: str, allow_private: bool) -> list[str]:
    """The addresses the URL's host resolves to, all allowed; UnsafeURL otherwise (blocking DNS)."""
    target = parse(url)
    try:
        infos = socket.getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnsafeURL(f"{target.host} does not resolve: {e}") from e
    return _checked(target, sorted({str(i[4][0]) for i in infos}), allow_private)


async def resolve(target: Target, allow_private: bool) -> str:
    """One allowed address to connect to now (non-blocking DNS); UnsafeURL otherwise."""
    try:
        ipaddress.ip_address(target.host)
        return _checked(target, [target.host], allow_private)[0]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(target.host, target.port, type=socket.SOCK_STREAM)
    except OSError as e:
        raise UnsafeURL(f"{target.host} does not resolve: {e}") from e
    return _checked(target, sorted({str(i[4][0]) for i in infos}), allow_private)[0]
