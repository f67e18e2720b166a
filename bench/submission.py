"""SMTP submission: messages/s accepted (250 only after the email is durably spooled).

mailtrack: `mailtrack serve` (API + submission; a `mailtrack worker` process delivers to Postfix's
smtp-sink meanwhile, as Postfix's smtp runs apart from its smtpd) takes
N × SIZE-byte messages from Postfix's `smtp-source -s 20` in plaintext on loopback (a trusted
network, since smtp-source cannot AUTH). Then a second phase times each transaction's 250 from a
Python client (aiosmtplib, 20 sessions) for p50/p99.

Baseline, measured in the same run: `../shared/bench/postfix_baseline.sh N SIZE SINK 20` — the same
`smtp-source` against Postfix's own smtpd accepting into its queue (its "accepted in A s").
Printed: both rates, mailtrack / Postfix, and the 250 latencies.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import socket
import subprocess
import time

import aiosmtplib
from _common import BIN, REPO, SHARED, create_key, database, env_for, free_port, pct, serve

# ../shared from the main checkout; a worktree under /work/wt/ finds it two levels up
POSTFIX = next((p for p in (SHARED / "bench" / "postfix_baseline.sh",
                            REPO.parents[1] / "shared" / "bench" / "postfix_baseline.sh") if p.exists()),
               SHARED / "bench" / "postfix_baseline.sh")


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def smtp_source(port: int, n: int, size: int, sessions: int) -> float:
    """Seconds for smtp-source to have every message answered."""
    t0 = time.perf_counter()
    out = subprocess.run(["smtp-source", "-s", str(sessions), "-m", str(n), "-l", str(size), "-f", "sender@bench.test",
                          "-t", "rcpt@sink.test", f"127.0.0.1:{port}"], capture_output=True, text=True, timeout=600)
    took = time.perf_counter() - t0
    if out.returncode != 0 or out.stderr.strip():
        raise RuntimeError(f"smtp-source failed: {out.stdout[-500:]}{out.stderr[-500:]}")
    return took


async def latencies(port: int, n: int, size: int, sessions: int) -> list[float]:
    """Seconds from MAIL FROM to the 250 after DATA, per message, over ``sessions`` connections."""
    body = "".join(f"line {i:04d} " + "x" * 60 + "\r\n" for i in range(size // 72))
    raw = f"From: app@bench.test\r\nTo: rcpt@sink.test\r\nSubject: bench\r\n\r\n{body}".encode()
    out: list[float] = []
    left = n

    async def session() -> None:
        nonlocal left
        async with aiosmtplib.SMTP(hostname="127.0.0.1", port=port, start_tls=False, timeout=60) as c:
            while left > 0:
                left -= 1
                t0 = time.perf_counter()
                _, reply = await c.sendmail("app@bench.test", ["rcpt@sink.test"], raw)
                out.append(time.perf_counter() - t0)
                assert reply.startswith("2.0.0 Ok: queued as"), reply

    await asyncio.gather(*(session() for _ in range(sessions)))
    return out


def count_accepted(url: str, key: str) -> int:
    import httpx

    stats = httpx.get(f"{url}/api/v1/stats", headers={"Authorization": f"Bearer {key}"}, timeout=30).json()
    return int(sum(stats["statuses"].values()))


def mailtrack_run(engine: str, n: int, size: int, sessions: int, latency_n: int,
                  processes: int = 1) -> tuple[float, list[float]]:
    sink_port = free_port()
    sink = subprocess.Popen(["smtp-sink", "-u", "nobody", f"127.0.0.1:{sink_port}", "500"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with database(engine) as db:
            port = free_port()
            # the delivery worker in its own process (`mailtrack worker`), as Postfix's smtp runs apart from smtpd
            env = env_for(db, transport_map=f"*=127.0.0.1:{sink_port}", inbound="false", worker="false",
                          submission_smtp=f"127.0.0.1:{port}", submission_allow_plaintext="true",
                          submission_trusted_networks="127.0.0.1/32=bench", max_message_size="25MB",
                          submission_reuse_port="true" if processes > 1 else "false")
            key = create_key(env, "bench")
            with serve(env) as url:
                wait_port(port)
                extra = [subprocess.Popen([str(BIN / "mailtrack"), *args], env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL)
                         for args in [["worker"]] + [["serve", "--role", "submission"]] * (processes - 1)]
                time.sleep(5)  # let them start (and bind the shared port, SO_REUSEPORT) before the clock starts
                try:
                    took = smtp_source(port, n, size, sessions)
                    accepted = count_accepted(url, key)
                    if accepted != n:
                        raise RuntimeError(f"{accepted} emails stored for {n} messages answered 250")
                    lat = asyncio.run(latencies(port, latency_n, size, sessions))
                finally:
                    for p in extra:
                        p.terminate()
                        p.wait(20)
        return n / took, lat
    finally:
        sink.terminate()
        sink.wait()


def postfix_run(n: int, size: int, sessions: int) -> float | None:
    if not POSTFIX.exists():
        print(f"  postfix baseline script not found at {POSTFIX}")
        return None
    out = subprocess.run(["bash", str(POSTFIX), str(n), str(size), str(free_port()), str(sessions)],
                         capture_output=True, text=True, timeout=900)
    print("  " + (out.stdout.strip() or out.stderr.strip()))
    m = re.search(r"accepted in ([\d.]+) s", out.stdout)
    return n / float(m.group(1)) if m else None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=3000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--latency-n", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=1,
                    help="also run with this many `serve --role submission` processes sharing the port")
    ap.add_argument("--pg", action="store_true")
    ap.add_argument("--no-postfix", action="store_true")
    a = ap.parse_args()
    print(f"submission: smtp-source -s {a.sessions} -m {a.n} -l {a.size}, plaintext on loopback")
    rates: list[tuple[str, float]] = []
    runs = [(e, p) for e in ("sqlite", *(("postgresql",) if a.pg else ())) for p in (1, a.processes)]
    for engine, procs in dict.fromkeys(runs):
        rate, lat = mailtrack_run(engine, a.n, a.size, a.sessions, a.latency_n, procs)
        rates.append((f"{engine}×{procs}", rate))
        print(f"  mailtrack {engine}, {procs} submission process(es): {rate:.0f} msg/s accepted (250 after spool); "
              f"250 reply over {len(lat)} messages, {a.sessions} sessions: "
              f"p50 {pct(lat, 50) * 1000:.1f} ms, p99 {pct(lat, 99) * 1000:.1f} ms")
    base = None if a.no_postfix else postfix_run(a.n, a.size, a.sessions)
    if base:
        print(f"  postfix smtpd: {base:.0f} msg/s accepted into its queue")
        print("ratio mailtrack/postfix: " + ", ".join(f"{e} {r / base:.2f}" for e, r in rates)
              + "  (target ≥ 1.0)")


if __name__ == "__main__":
    main()
