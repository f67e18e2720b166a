"""Bounce parser benchmark: messages parsed and classified per second over the whole corpus, one core.

Reads every message of the corpus (``../shared/bounces`` beside the repository, or
``$MAILTRACK_BOUNCES_DIR``) into memory, then runs ``parse_message`` over all of them in passes
until ``--seconds`` of CPU time are spent (at least one pass). Prints the rate of the best pass and
of all passes together (CPU time, so other load on the machine counts less), the slowest single
message, and — for the record of why the parser uses it — how fast the stdlib ``email`` package
alone parses the corpus with ``policy.compat32`` and with ``policy.default``.

usage: python bench/bounces.py [--seconds 10] [--cpu 0]
Bounded: stops after --seconds of CPU time (default 10) per phase; aim ≥ 2,000 messages/s.
"""

from __future__ import annotations

import argparse
import email
import email.policy
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from mailtrack.bounces import parse_message  # noqa: E402


def corpus_dir() -> Path:
    env = os.environ.get("MAILTRACK_BOUNCES_DIR")
    return Path(env) if env else REPO.parent / "shared" / "bounces"


def load() -> list[bytes]:
    messages = corpus_dir() / "messages"
    if not messages.is_dir():
        sys.exit(f"corpus not found at {messages} (set MAILTRACK_BOUNCES_DIR)")
    return [p.read_bytes() for p in sorted(messages.iterdir()) if p.is_file()]


def passes(raws: list[bytes], budget: float, work: Callable[[bytes], object]) -> tuple[float, float, int]:
    """(best pass rate, overall rate, passes) of work(raw) on every message until budget CPU seconds."""
    best = 0.0
    spent = 0.0
    count = 0
    while count == 0 or spent < budget:
        started = time.process_time()
        for raw in raws:
            work(raw)
        elapsed = max(time.process_time() - started, 1e-9)
        spent += elapsed
        count += 1
        best = max(best, len(raws) / elapsed)
    return best, count * len(raws) / spent, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="CPU seconds per phase (default 10)")
    parser.add_argument("--cpu", type=int, default=None, help="pin the process to this CPU (Linux)")
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})

    raws = load()
    size = sum(len(r) for r in raws)
    print(f"corpus: {len(raws)} messages, {size / 1024:.0f} KiB, from {corpus_dir()}")

    for raw in raws:  # warm-up, and the slowest single message
        parse_message(raw)
    slowest = 0.0
    for raw in raws:
        started = time.perf_counter()
        parse_message(raw)
        slowest = max(slowest, time.perf_counter() - started)

    best, overall, count = passes(raws, args.seconds, parse_message)
    print(f"parse_message: best pass {best:,.0f} msg/s, overall {overall:,.0f} msg/s over {count} passes")
    print(f"slowest single message: {slowest * 1000:.1f} ms")

    budget = min(args.seconds, 5.0)
    for name, policy in (("compat32", email.policy.compat32), ("default", email.policy.default)):

        def stdlib(raw: bytes, policy: email.policy.Policy = policy) -> None:
            msg = email.message_from_bytes(raw, policy=policy)
            for part in msg.walk():
                part.get_content_type()
            msg.get("Subject")

        best_std, _, _ = passes(raws, budget, stdlib)
        print(f"stdlib email alone, policy {name}: best pass {best_std:,.0f} msg/s")

    verdict = "meets" if best >= 2000 else "misses"
    print(f"target 2,000 msg/s: {verdict} ({best:,.0f})")


if __name__ == "__main__":
    main()
