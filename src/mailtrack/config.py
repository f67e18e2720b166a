"""Settings declared as data: name, default, one-line help, parser.

Values come from ``MAILTRACK_<NAME>`` environment variables, then an optional TOML file
(``MAILTRACK_CONFIG`` or ``--config``), then the defaults. ``mailtrack settings`` lists them.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import ConfigError


def parse_duration(text: str) -> float:
    """'250ms', '5s', '5m', '1h', '5d' or a bare number of seconds → seconds."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*", text)
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 30s, 5m, 1h, 5d)")
    value = float(m.group(1))
    return value * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}[m.group(2)]


def parse_hostport(text: str) -> tuple[str, int]:
    host, sep, port = text.strip().rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 <= int(port) <= 65535:
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    return host.strip("[]"), int(port)


def parse_bool(text: str) -> bool:
    t = text.strip().lower()
    if t in ("1", "true", "yes", "on"):
        return True
    if t in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true/false, got {text!r}")


def parse_schedule(text: str) -> tuple[float, ...]:
    if text.strip().lower() in ("", "default"):
        return ()
    steps = tuple(parse_duration(p) for p in text.split(","))
    if any(s <= 0 for s in steps):
        raise ValueError("retry steps must be positive")
    return steps


def parse_transport_map(text: str) -> dict[str, str]:
    """'example.test=127.0.0.1:2526, *=mx' → {'example.test': '127.0.0.1:2526', '*': 'mx'}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        domain, sep, target = part.partition("=")
        if not sep or not domain.strip() or not target.strip():
            raise ValueError(f"transport map entry {part!r} is not DOMAIN=TARGET")
        target = target.strip()
        if target.lower() != "mx":
            parse_hostport(target)
        out[domain.strip().lower()] = target
    return out


def parse_domains(text: str) -> tuple[str, ...]:
    """'Acme.test, .bank.example' → ('acme.test', 'bank.example')."""
    out = tuple(d.strip().lower().lstrip(".") for d in text.split(",") if d.strip())
    bad = [d for d in out if re.search(r"[\s/:@]", d) or ".." in d]
    if bad:
        raise ValueError(f"not a domain: {bad[0]!r}")
    return out


def _int(text: str) -> int:
    return int(text)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    help: str
    parse: Callable[[str], Any] = str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("DATABASE_URL", "sqlite:///./var/mailtrack.db",
            "SQLAlchemy URL: sqlite:///PATH (embedded) or postgresql+psycopg://USER@HOST/DB"),
    Setting("HTTP", "127.0.0.1:8000", "HOST:PORT of the HTTP API, web UI and tracking endpoints",
            parse_hostport),
    Setting("INBOUND_SMTP", "127.0.0.1:2525",
            "HOST:PORT of the inbound SMTP server for bounces and feedback reports", parse_hostport),
    Setting("PUBLIC_URL", "http://127.0.0.1:8000",
            "Base URL recipients' mail clients reach for the open pixel and click redirects"),
    Setting("BOUNCE_DOMAIN", "bounces.mailtrack.test",
            "Domain of the VERP return path bounces+TOKEN@DOMAIN (its MX must point at INBOUND_SMTP)"),
    Setting("SECRET_KEY", "", "Key for signing tokens (VERP, pixel, links) and sessions; "
            "generated into var/secret_key when empty", secret=True),
    Setting("TRANSPORT_MAP", "*=mx",
            "Routing like Postfix transport maps: 'example.test=127.0.0.1:2526, *=mx'",
            parse_transport_map),
    Setting("SMARTHOST", "", "Relay every message through HOST:PORT instead of MX lookups (empty: off)"),
    Setting("SMARTHOST_USER", "", "AUTH user for the smarthost"),
    Setting("SMARTHOST_PASSWORD", "", "AUTH password for the smarthost", secret=True),
    Setting("REQUIRE_TLS", "false", "Refuse to deliver over a connection without STARTTLS", parse_bool),
    Setting("RETRY_SCHEDULE", "default",
            "Retry delays, e.g. '1s,2s,5s' (last repeats); default 5m doubling to 1h with jitter",
            parse_schedule),
    Setting("MAX_QUEUE_AGE", "5d", "Give up (soft_bounce) when the first attempt is older than this",
            parse_duration),
    Setting("SMTP_TIMEOUT", "300s",
            "Timeout for each SMTP command/reply; the reply after DATA gets twice this (RFC 5321 §4.5.3.2)",
            parse_duration),
    Setting("DELIVERY_LEASE", "3m",
            "How long a worker holds the recipients it claimed; a crashed worker's are retried after this",
            parse_duration),
    Setting("WORKER_HEARTBEAT", "5s",
            "How often a delivery worker says it is alive and renews the leases of what it holds",
            parse_duration),
    Setting("WORKER_DEAD_AFTER", "15s",
            "A worker whose heartbeat is this old is dead: its recipients are handed to the others",
            parse_duration),
    Setting("MAX_CONNECTIONS", "100", "Concurrent outbound SMTP connections in total", _int),
    Setting("MAX_CONNECTIONS_PER_HOST", "10", "Concurrent outbound SMTP connections per destination",
            _int),
    Setting("SUPPRESS_HARD_BOUNCES", "true", "Add hard-bounced addresses to the suppression list",
            parse_bool),
    Setting("EMBED_FRAME_ANCESTORS", "'self'",
            "CSP frame-ancestors for the embeddable task notes (/embed/notes/REF): the host application's "
            "origin(s), e.g. 'https://app.example.com' ('self' = same site only, * = any site)"),
    Setting("MAX_MESSAGE_SIZE", "25MB", "Largest email accepted by the API (bytes; KB/MB suffixes)",
            lambda t: _size(t)),
    Setting("INBOUND_MAX_SIZE", "10MB", "Largest message accepted by the inbound SMTP server",
            lambda t: _size(t)),
    Setting("INBOUND_RETENTION", "30d", "How long raw inbound reports are kept", parse_duration),
    Setting("WORKER", "true", "Run the delivery worker inside 'mailtrack serve'", parse_bool),
    Setting("INBOUND", "true", "Run the inbound SMTP server inside 'mailtrack serve'", parse_bool),
    Setting("LOG_LEVEL", "info", "debug, info, warning or error"),
    Setting("LOG_FORMAT", "text", "text, or json: one JSON object per line with the request id and the "
            "email/recipient ids where they apply", lambda t: _one_of(t, ("text", "json"))),
    Setting("METRICS_TOKEN", "", "Bearer token GET /metrics requires (empty: open)", secret=True),
    Setting("ADMIN_TOKEN", "", "Bearer token for the admin queue API /api/v1/admin/… (empty: that API is off)",
            secret=True),
    Setting("RETENTION", "180d", "Emails, recipients, events and hits older than this are purged "
            "(daily, in small chunks; daily rollups are kept); 0 keeps everything", parse_duration),
    Setting("TRACKING_EXCLUDE_DOMAINS", "",
            "Comma-separated domains whose links are never rewritten for click tracking "
            "(subdomains included), e.g. 'portal.acme.test, bank.example'", parse_domains),
    # webhooks
    Setting("WEBHOOKS", "true", "Run the webhook dispatcher inside 'mailtrack serve'", parse_bool),
    Setting("WEBHOOK_RETRY_SCHEDULE", "default",
            "Webhook retry delays, e.g. '1s,5s,1m' (last repeats); default 5s doubling to 6h with jitter",
            parse_schedule),
    Setting("WEBHOOK_MAX_AGE", "3d",
            "Stop retrying a webhook delivery after this; an endpoint failing this long is disabled",
            parse_duration),
    Setting("WEBHOOK_TIMEOUT", "10s", "Time a webhook receiver has to answer a POST", parse_duration),
    Setting("WEBHOOK_CONCURRENCY", "8", "Concurrent POSTs per webhook endpoint", _int),
    Setting("WEBHOOK_ALLOW_PRIVATE", "false",
            "Allow webhook URLs on loopback/private/link-local addresses (tests, single-host setups)", parse_bool),
    # --- sending domains, DKIM, throttling (mailtrack.domains, delivery.throttle) ---
    Setting("DNS_RESOLVER", "", "HOST:PORT of the DNS server for sending-domain checks (empty: the system resolver)"),
    Setting("UNVERIFIED_FROM", "send",
            "A From domain with no verified sending domain: 'send' (unsigned, marked not authenticated) "
            "or 'refuse' (422 naming the domain)", lambda t: _choice(t, ("send", "refuse"))),
    Setting("SPF_MECHANISM", "",
            "The SPF mechanism that authorizes this server's IPs, e.g. 'ip4:203.0.113.7' (empty: a:BOUNCE_DOMAIN)"),
    Setting("DKIM_RETIRE_AFTER", "7d", "After a rotation, how long the old DKIM selector stays published",
            parse_duration),
    Setting("UNSUBSCRIBE_EVENT_MESSAGES", "true",
            "Event messages carry List-Unsubscribe (one-click) unless the email says otherwise; invoices, "
            "task sheets and purchase orders never do by default", parse_bool),
    Setting("THROTTLE", "",
            "Per-provider limits GROUP=CONNECTIONS/MSG_PER_S, e.g. 'google=10/20, microsoft=5/10' "
            "(groups: google, microsoft, yahoo, apple; empty: the documented defaults)",
            lambda t: _throttle(t)),
    Setting("THROTTLE_PAUSE", "1m",
            "How long a provider is paused after a rate-limit reply (doubling on repeats, up to 1h)",
            parse_duration),
    Setting("DOMAIN_RECHECK", "1h", "How often the DNS records of every sending domain are checked again",
            parse_duration),
    # SMTP submission (mailtrack.submission)
    Setting("SUBMISSION_SMTP", "127.0.0.1:2587",
            "HOST:PORT of the SMTP submission server (STARTTLS, AUTH = account name + API key); empty: off",
            lambda t: parse_hostport(t) if t.strip() else None),
    Setting("SUBMISSIONS_SMTP", "", "HOST:PORT for SMTP submission over implicit TLS (port 465 style); empty: off",
            lambda t: parse_hostport(t) if t.strip() else None),
    Setting("TLS_CERT", "", "PEM certificate (chain) for SMTP submission; empty: a self-signed one in var/"),
    Setting("TLS_KEY", "", "PEM private key for TLS_CERT"),
    Setting("SUBMISSION_ALLOW_PLAINTEXT", "false",
            "Allow AUTH without TLS on SMTP submission (loopback tests and benchmarks only)", parse_bool),
    Setting("SUBMISSION_MAX_RECIPIENTS", "100", "Recipients per message on SMTP submission (452 past it)", _int),
    Setting("SUBMISSION_REUSE_PORT", "false",
            "Let several 'serve --role submission' processes share the port (SO_REUSEPORT) to use more cores; "
            "off: a second instance fails with 'address in use'", parse_bool),
    Setting("SUBMISSION_TRUSTED_NETWORKS", "",
            "Clients that submit without AUTH, as NETWORK=ACCOUNT pairs, e.g. '127.0.0.1/32=bench' "
            "(like Postfix's mynetworks; empty: every client must AUTH)", lambda t: _trusted(t)),
)


def _throttle(text: str) -> str:
    from .domain.providers import parse_limits

    parse_limits(text)  # validate now; the worker parses it again
    return text


def _choice(text: str, allowed: tuple[str, ...]) -> str:
    t = text.strip().lower()
    if t not in allowed:
        raise ValueError(f"expected one of {', '.join(allowed)}, got {text!r}")
    return t


def _one_of(text: str, choices: tuple[str, ...]) -> str:
    t = text.strip().lower()
    if t not in choices:
        raise ValueError(f"expected one of {', '.join(choices)}, got {text!r}")
    return t


def _trusted(text: str) -> tuple[tuple[Any, str], ...]:
    """'127.0.0.1/32=bench, 10.0.0.0/8=acme' → ((IPv4Network, 'bench'), …)."""
    import ipaddress

    out = []
    for part in filter(None, (p.strip() for p in text.split(","))):
        net, sep, account = part.partition("=")
        if not sep or not account.strip():
            raise ValueError(f"trusted network {part!r} is not NETWORK=ACCOUNT")
        out.append((ipaddress.ip_network(net.strip(), strict=False), account.strip()))
    return tuple(out)


def _size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+)\s*(B|KB|MB|GB)?\s*", text, re.IGNORECASE)
    if not m:
        raise ValueError(f"not a size: {text!r} (use e.g. 25MB)")
    mult = {"b": 1, "kb": 1024, "mb": 1024**2, "gb": 1024**3}[(m.group(2) or "b").lower()]
    return int(m.group(1)) * mult


class Config:
    """Resolved settings; attribute names are the lower-cased setting names."""

    database_url: str
    http: tuple[str, int]
    inbound_smtp: tuple[str, int]
    public_url: str
    bounce_domain: str
    secret_key: str
    transport_map: dict[str, str]
    smarthost: str
    smarthost_user: str
    smarthost_password: str
    require_tls: bool
    retry_schedule: tuple[float, ...]
    max_queue_age: float
    smtp_timeout: float
    delivery_lease: float
    worker_heartbeat: float
    worker_dead_after: float
    max_connections: int
    max_connections_per_host: int
    suppress_hard_bounces: bool
    embed_frame_ancestors: str
    max_message_size: int
    inbound_max_size: int
    inbound_retention: float
    worker: bool
    inbound: bool
    log_level: str
    log_format: str
    metrics_token: str
    admin_token: str
    retention: float
    tracking_exclude_domains: tuple[str, ...]
    webhooks: bool
    webhook_retry_schedule: tuple[float, ...]
    webhook_max_age: float
    webhook_timeout: float
    webhook_concurrency: int
    webhook_allow_private: bool
    dns_resolver: str
    unverified_from: str
    spf_mechanism: str
    dkim_retire_after: float
    domain_recheck: float
    unsubscribe_event_messages: bool
    throttle: str
    throttle_pause: float
    submission_smtp: tuple[str, int] | None
    submissions_smtp: tuple[str, int] | None
    tls_cert: str
    tls_key: str
    submission_allow_plaintext: bool
    submission_max_recipients: int
    submission_reuse_port: bool
    submission_trusted_networks: tuple[tuple[Any, str], ...]

    def __init__(self, values: Mapping[str, Any]) -> None:
        for k, v in values.items():
            setattr(self, k.lower(), v)

    def replace(self, **changes: Any) -> Config:
        values = {s.name: getattr(self, s.name.lower()) for s in SETTINGS}
        values.update({k.upper(): v for k, v in changes.items()})
        return Config(values)


def load_config(env: Mapping[str, str] | None = None, file: str | Path | None = None) -> Config:
    """Resolve every setting; raise ConfigError naming each bad one."""
    env = os.environ if env is None else env
    file = file or env.get("MAILTRACK_CONFIG")
    from_file: dict[str, Any] = {}
    if file:
        try:
            from_file = {k.upper(): v for k, v in tomllib.loads(Path(file).read_text()).items()}
        except (OSError, tomllib.TOMLDecodeError) as e:
            raise ConfigError(f"cannot read config file {file}: {e}") from e
    known = {s.name for s in SETTINGS}
    unknown = sorted(set(from_file) - known)
    if unknown:
        raise ConfigError(f"unknown setting(s) in {file}: {', '.join(unknown)}")
    values: dict[str, Any] = {}
    errors: list[str] = []
    for s in SETTINGS:
        raw = env.get(f"MAILTRACK_{s.name}")
        if raw is None:
            raw = str(from_file.get(s.name, s.default))
        try:
            values[s.name] = s.parse(raw)
        except (ValueError, TypeError) as e:
            errors.append(f"MAILTRACK_{s.name}: {e}")
    if errors:
        raise ConfigError("invalid settings:\n  " + "\n  ".join(errors))
    return Config(values)


def ensure_secret(config: Config, var_dir: Path = Path("var")) -> Config:
    """Use the configured secret, or a generated one kept in var/secret_key."""
    if config.secret_key:
        return config
    import secrets

    path = var_dir / "secret_key"
    if path.exists():
        key = path.read_text().strip()
    else:
        var_dir.mkdir(parents=True, exist_ok=True)
        key = secrets.token_hex(32)
        path.write_text(key)
        path.chmod(0o600)
    return config.replace(secret_key=key)
