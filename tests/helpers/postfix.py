"""A private Postfix instance configured as a null client: no listener, everything relayed to one host with SASL.

It is what an application server's local MTA looks like: the application calls ``sendmail``, Postfix
queues the message and relays it to ``relayhost`` over STARTTLS with AUTH. Its own config, queue and
log directories live in a temporary directory (never /etc/postfix), so it cannot disturb the system
instance or another test run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

POSTFIX = shutil.which("postfix", path="/usr/sbin:/usr/bin")
SENDMAIL = "/usr/sbin/sendmail"

# The services a null client needs; chroot off, so the SASL plug-ins in /usr/lib are found.
MASTER_CF = """\
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def available() -> bool:
    return POSTFIX is not None and os.path.exists(SENDMAIL) and os.geteuid() == 0


@dataclass
class NullClient:
    root: Path

    @property
    def config_dir(self) -> Path:
        return self.root / "etc"

    def sendmail(self, raw: bytes, sender: str, rcpts: list[str]) -> None:
        subprocess.run([SENDMAIL, "-C", str(self.config_dir), "-f", sender, "--", *rcpts], input=raw,
                       check=True, capture_output=True, timeout=60)

    def log(self) -> str:
        path = self.root / "postfix.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def relayed(self) -> list[str]:
        """The replies of the relay host to delivered messages ('250 2.0.0 Ok: queued as …')."""
        return re.findall(r"status=sent \((250 [^)]*)\)", self.log())

    def flush(self) -> None:
        subprocess.run([POSTFIX or "postfix", "-c", str(self.config_dir), "flush"], capture_output=True, timeout=60)


@contextlib.contextmanager
def null_client(relay: tuple[str, int], user: str, password: str) -> Iterator[NullClient]:
    # not under pytest's tmp_path: the postfix user must be able to reach the queue
    root = Path(tempfile.mkdtemp(prefix="mailtrack-postfix-", dir="/tmp"))
    root.chmod(0o755)
    etc, spool, data = root / "etc", root / "spool", root / "data"
    for d in (etc, spool, data):
        d.mkdir()
    shutil.chown(data, "postfix", "postfix")
    (etc / "master.cf").write_text(MASTER_CF)
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": str(spool), "data_directory": str(data),
        "maillog_file": str(root / "postfix.log"), "maillog_file_prefixes": str(root),
        "syslog_name": "postfix-mailtrack-test",
        "myhostname": "app.test", "mydomain": "app.test", "myorigin": "app.test", "mydestination": "",
        "inet_interfaces": "loopback-only", "inet_protocols": "ipv4", "alias_maps": "", "alias_database": "",
        "local_transport": "error:no local delivery", "relayhost": f"[{relay[0]}]:{relay[1]}",
        "smtp_sasl_auth_enable": "yes", "smtp_sasl_password_maps": f"static:{user}:{password}",
        "smtp_sasl_security_options": "noanonymous", "smtp_sasl_mechanism_filter": "plain, login",
        "smtp_tls_security_level": "encrypt", "smtp_tls_loglevel": "1",
        "queue_run_delay": "1s", "minimal_backoff_time": "1s", "maximal_backoff_time": "2s",
    }
    (etc / "main.cf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    cmd = [POSTFIX or "postfix", "-c", str(etc)]
    try:
        started = subprocess.run([*cmd, "start"], capture_output=True, text=True, timeout=120)
        if started.returncode != 0:
            raise RuntimeError(f"postfix did not start: {started.stdout}{started.stderr}")
        yield NullClient(root)
    finally:
        subprocess.run([*cmd, "stop"], capture_output=True, timeout=120)
        shutil.rmtree(root, ignore_errors=True)
