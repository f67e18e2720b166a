"""Open-pixel benchmark: recorded hits/s through a real `mailtrack serve --role api`, with wrk.

For each engine (a fresh SQLite file; a fresh PostgreSQL schema) it starts the server, submits a
real HTML email through the API, takes the recipient's real pixel URL and loads it with
``wrk -t1 -c50 -d8s --latency``. Then it checks that the recipient's ``opens_total`` and its
``opened`` events equal the 2xx responses wrk completed: every answered hit was recorded.
Baseline in the same run: nginx's ``empty_gif`` (records nothing) via
``../shared/bench/nginx_pixel_baseline.sh`` with the same wrk settings, run right before each of
``--rounds`` rounds (the machine's speed drifts within minutes): each round gives a ratio, and the
median is the figure.

``--unrecorded`` first loads the same server with a token that fails verification: the same
pixel path without recording, the ceiling that recording is measured against.
``--no-nginx`` skips the nginx run (for quick A/B loops).
``--during-burst`` instead measures pixel and click latency, failures and recorded/answered while
2,000 emails are submitted and delivered (see tracking_burst.py).

usage: python bench/tracking.py [--engines sqlite,postgresql] [--seconds 8] [--connections 50]
                                [--rounds 3] [--unrecorded] [--no-nginx] [--show-wrk] [--during-burst]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from _common import SHARED, database, serve

BIN = Path(sys.executable).parent
NGINX = SHARED / "bench" / "nginx_pixel_baseline.sh"
SECRET = "bench-secret"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36"


def _ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|µs|ms|s|m)", text)
    if not m:
        return float("nan")
    return float(m.group(1)) * {"us": 0.001, "µs": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}[m.group(2)]


def parse_wrk(out: str) -> dict[str, Any]:
    done = re.search(r"(\d+) requests in", out)
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "completed": int(done.group(1)) if done else 0,
        "non2xx": int(non2xx.group(1)) if non2xx else 0,
        "rps": float(rps.group(1)) if rps else 0.0,
        "p50": _ms(m.group(1)) if (m := re.search(r"^\s+50%\s+(\S+)", out, re.M)) else float("nan"),
        "p99": _ms(m.group(1)) if (m := re.search(r"^\s+99%\s+(\S+)", out, re.M)) else float("nan"),
        "socket_errors": errors.group(1) if errors else "none",
    }


def recorded(url: str, key: str, email_id: str, rid: str) -> tuple[int, int]:
    """(opens_total, opened events) for the recipient, read back through the API."""
    h = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=url, headers=h, timeout=60) as c:
        view = c.get(f"/api/v1/emails/{email_id}").json()
        total = next(r for r in view["recipients"] if r["id"] == rid)["opens"]["total"]
        evs = c.get(f"/api/v1/recipients/{rid}/events").json()["events"]
    return int(total), sum(1 for e in evs if e["type"] == "opened")


def _wrk(url: str, seconds: int, conns: int) -> str:
    return subprocess.run(["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--latency", "-H", f"User-Agent: {UA}", url],
                          check=True, capture_output=True, text=True, timeout=seconds + 60).stdout


def run_engine(engine: str, seconds: int, conns: int, unrecorded: bool = False, rounds: int = 1,
               baseline: Any = None) -> dict[str, Any]:
    """Rounds of wrk on one server; ``baseline()`` (nginx) runs right before each round's wrk."""
    from mailtrack import tokens

    res: dict[str, Any] = {"rounds": []}
    with database(engine) as db_url:
        env = {**os.environ, "MAILTRACK_DATABASE_URL": db_url, "MAILTRACK_SECRET_KEY": SECRET,
               "MAILTRACK_LOG_LEVEL": "warning"}
        key = subprocess.run([str(BIN / "mailtrack"), "apikey", "create", "--account", "bench"], env=env,
                             check=True, capture_output=True, text=True, timeout=60).stdout.strip().splitlines()[-1]
        with serve(env, "--role", "api") as url:
            body = {"from": "ops@acme.example", "to": ["reader@example.com"], "subject": "Task T-1",
                    "html": '<html><body><p>Task</p><a href="https://acme.example/t/1">open</a></body></html>'}
            r = httpx.post(f"{url}/api/v1/emails", json=body, headers={"Authorization": f"Bearer {key}"}, timeout=30)
            r.raise_for_status()
            email_id, rid = r.json()["id"], r.json()["recipients"][0]["id"]
            pixel = f"{url}/o/{tokens.open_token(SECRET, rid)}.gif"
            warm = httpx.get(pixel, headers={"User-Agent": UA}, timeout=10)
            assert warm.status_code == 200 and warm.headers["content-type"] == "image/gif"
            if unrecorded:  # same server and path, a token that fails verification: served, not recorded
                bad = pixel.replace(".gif", "0.gif")
                res["unrecorded"] = parse_wrk(_wrk(bad, seconds, conns))
            expected = 1  # the warm-up hit
            for _ in range(rounds):
                base = baseline() if baseline is not None else float("nan")
                out = _wrk(pixel, seconds, conns)
                one = {**parse_wrk(out), "base": base, "wrk": out}
                res["rounds"].append(one)
                expected += one["completed"] - one["non2xx"]
            res["expected"] = expected
            deadline = time.monotonic() + 60  # hits are written after the answer: wait for them
            while True:
                res["opens_total"], res["events"] = recorded(url, key, email_id, rid)
                if res["opens_total"] >= res["expected"] or time.monotonic() > deadline:
                    break
                time.sleep(0.2)
    return res


def nginx_baseline(seconds: int, conns: int) -> float:
    out = subprocess.run(["bash", str(NGINX), str(seconds), str(conns)], check=True, capture_output=True,
                         text=True, timeout=seconds + 120).stdout
    m = re.search(r"nginx empty_gif: (\d+) req/s", out)
    return float(m.group(1)) if m else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--engines", default="sqlite,postgresql")
    ap.add_argument("--seconds", type=int, default=8)
    ap.add_argument("--connections", type=int, default=50)
    ap.add_argument("--show-wrk", action="store_true")
    ap.add_argument("--rounds", type=int, default=3, help="nginx then mailtrack, this many times (median ratio)")
    ap.add_argument("--no-nginx", action="store_true", help="skip the nginx baseline (A/B loops)")
    ap.add_argument("--unrecorded", action="store_true",
                    help="also load the same server with a bad token first: the pixel path without recording")
    ap.add_argument("--during-burst", action="store_true",
                    help="pixel/click latency and failures while 2,000 emails are submitted and delivered")
    args = ap.parse_args()
    if args.during_burst:
        from tracking_burst import run

        for engine in args.engines.split(","):
            run(engine)
        return
    baseline = None if args.no_nginx else (lambda: nginx_baseline(args.seconds, args.connections))
    for engine in args.engines.split(","):
        res = run_engine(engine, args.seconds, args.connections, args.unrecorded, args.rounds, baseline)
        if "unrecorded" in res:
            u = res["unrecorded"]
            print(f"{engine:>10}: same path, not recorded (bad token): {u['rps']:,.0f} req/s  p50 {u['p50']:.2f} ms  "
                  f"p99 {u['p99']:.2f} ms")
        ratios = []
        for i, one in enumerate(res["rounds"], 1):
            if args.show_wrk:
                print(one["wrk"])
            ratio = one["rps"] / one["base"]
            ratios.append(ratio)
            print(f"{engine:>10} round {i}: nginx empty_gif {one['base']:,.0f} req/s, mailtrack {one['rps']:,.0f} "
                  f"recorded hits/s  p50 {one['p50']:.2f} ms  p99 {one['p99']:.2f} ms  (non-2xx {one['non2xx']}, "
                  f"socket errors {one['socket_errors']})  ratio {ratio:.3f}")
        # wrk stops the clock with up to one request per connection in flight: those are recorded
        # (and answered) but not counted by wrk, so recorded may exceed completed by < connections a round
        extra = res["opens_total"] - res["expected"]
        ok = res["opens_total"] == res["events"] and 0 <= extra <= args.connections * len(res["rounds"])
        print(f"{engine:>10}: recorded opens_total {res['opens_total']} / events {res['events']} / 2xx answered "
              f"{res['expected']} {'OK' if ok else 'MISMATCH'} (in flight at wrk's stops: {extra})  "
              f"ratio to nginx: median {statistics.median(ratios):.3f} (min {min(ratios):.3f}, "
              f"max {max(ratios):.3f}, {len(ratios)} rounds; target 0.15)")

if __name__ == "__main__":
    main()
