"""SMTP submission: instructions per message of the serve process under callgrind (repeatable under load).

`mailtrack serve --role submission` (SQLite or PostgreSQL, 127.0.0.1 trusted as in bench/submission.py)
runs under `valgrind --tool=callgrind`; after a warm-up of WARM messages from `smtp-source -s S -l SIZE`,
the counters are zeroed, N more messages are sent, and the counters dumped: Ir / N is the cost of one
message (every thread: the event loop and the group-commit writer). Wall-clock time does not matter here,
so the other core's load does not change the figure.

    python bench/submission_callgrind.py [-n 1000] [--warm 200] [--size 4096] [--sessions 20] [--pg] [--keep DIR]

CG_THREADS=yes writes one file per thread (the event loop's and the writer's cost apart).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import BIN, create_key, database, env_for, free_port
from submission import smtp_source, wait_port


def total_ir(out_dir: Path, pid: int) -> int:
    """Instructions in the dump (every thread's file with --separate-threads) of process ``pid``."""
    total = 0
    for f in out_dir.glob(f"callgrind.out.{pid}.*"):
        m = re.search(rb"^(?:summary|totals): (\d+)", f.read_bytes(), re.M)
        if m:
            total += int(m.group(1))
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=1000)
    ap.add_argument("--warm", type=int, default=200)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--sessions", type=int, default=20)
    ap.add_argument("--pg", action="store_true")
    ap.add_argument("--keep", type=Path, help="leave the callgrind files in this directory (callgrind_annotate)")
    a = ap.parse_args()
    out_dir = Path(tempfile.mkdtemp(prefix="cg-sub-"))
    with database("postgresql" if a.pg else "sqlite") as db:
        port = free_port()
        env = env_for(db, inbound="false", worker="false", submission_smtp=f"127.0.0.1:{port}",
                      submission_allow_plaintext="true", submission_trusted_networks="127.0.0.1/32=bench",
                      max_message_size="25MB", http=f"127.0.0.1:{free_port()}")
        create_key(env, "bench")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/callgrind.out.%p",
             f"--separate-threads={os.environ.get('CG_THREADS', 'no')}", sys.executable, str(BIN / "mailtrack"), "serve", "--role", "submission"],
            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_port(port, timeout=300)
            smtp_source(port, a.warm, a.size, a.sessions)
            subprocess.run(["callgrind_control", "--zero", str(proc.pid)], check=True, capture_output=True)
            for f in out_dir.glob("callgrind.out.*"):
                f.unlink()
            t0 = time.perf_counter()
            smtp_source(port, a.n, a.size, a.sessions)
            took = time.perf_counter() - t0
            subprocess.run(["callgrind_control", "--dump", str(proc.pid)], check=True, capture_output=True)
            ir = total_ir(out_dir, proc.pid)
        finally:
            proc.terminate()
            proc.wait(120)
    engine = "postgresql" if a.pg else "sqlite"
    print(f"submission under callgrind ({engine}, smtp-source -s {a.sessions} -l {a.size}): {a.n} messages in "
          f"{took:.0f} s, {ir / a.n / 1e6:.2f} M instructions per message (serve process, all threads)")
    if a.keep:
        a.keep.mkdir(parents=True, exist_ok=True)
        for f in out_dir.glob(f"callgrind.out.{proc.pid}.*"):  # the dump (not the file written at exit)
            shutil.move(str(f), a.keep / f.name)
    shutil.rmtree(out_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
