"""The submission server's TLS context: the configured certificate, or a self-signed one made once in var/."""

from __future__ import annotations

import datetime
import logging
import socket
import ssl
from pathlib import Path

from ..config import Config
from ..errors import ConfigError

log = logging.getLogger("mailtrack.submission")

SELF_SIGNED_CERT = "submission-cert.pem"
SELF_SIGNED_KEY = "submission-key.pem"


def self_signed(var_dir: Path, hostname: str) -> tuple[Path, Path]:
    """(certificate, key) in ``var_dir``, generated on first use and reused afterwards."""
    cert_path, key_path = var_dir / SELF_SIGNED_CERT, var_dir / SELF_SIGNED_KEY
    if cert_path.exists() and key_path.exists():
        return cert_path, key_path
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
    start = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=3650))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname), x509.DNSName("localhost")]),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    var_dir.mkdir(parents=True, exist_ok=True)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_path.chmod(0o600)
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return cert_path, key_path


def server_context(config: Config, var_dir: Path = Path("var")) -> ssl.SSLContext:
    """TLS 1.2+ server context; warns when it had to fall back to the self-signed certificate."""
    if bool(config.tls_cert) != bool(config.tls_key):
        raise ConfigError("set both MAILTRACK_TLS_CERT and MAILTRACK_TLS_KEY, or neither")
    if config.tls_cert:
        cert, key = Path(config.tls_cert), Path(config.tls_key)
    else:
        cert, key = self_signed(var_dir, socket.getfqdn())
        log.warning("SMTP submission uses the self-signed certificate %s; clients must not verify it. "
                    "Set MAILTRACK_TLS_CERT and MAILTRACK_TLS_KEY for a real one.", cert)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        ctx.load_cert_chain(cert, key)
    except (OSError, ssl.SSLError) as e:
        raise ConfigError(f"cannot load the TLS certificate {cert} / key {key}: {e}") from e
    return ctx
