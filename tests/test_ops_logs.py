"""MAILTRACK_LOG_FORMAT=json on a real `mailtrack serve`: one JSON object per line, request ids, no pixel lines."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx

from mailtrack import tokens
from tests.test_ops_backup import env_for, run, serve, stop


def test_json_logs_carry_the_request_id_and_skip_pixel_hits(tmp_path: Path) -> None:
    env = {**env_for(tmp_path / "m.db"), "MAILTRACK_LOG_FORMAT": "json", "MAILTRACK_LOG_LEVEL": "info"}
    key = run(env, "apikey", "create", "--account", "acme").stdout.strip().splitlines()[-1]
    log = tmp_path / "serve.log"
    proc, url = serve(env, log)
    try:
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=30) as c:
            r = c.post("/api/v1/emails", json={"from": "ops@acme.test", "to": ["a@example.test"], "subject": "S",
                                               "html": "<p>hi</p>"})
            assert r.status_code == 202, r.text
            eid, rid = r.json()["id"], r.json()["recipients"][0]["id"]
            r = c.get(f"/api/v1/emails/{eid}", headers={"X-Request-ID": "req-42"})
            assert r.headers["x-request-id"] == "req-42"
            made_up = c.get("/healthz", headers={"X-Request-ID": "bad id with spaces"}).headers["x-request-id"]
            assert made_up != "bad id with spaces" and made_up
            for _ in range(5):
                assert c.get(f"/o/{tokens.open_token('test-secret', rid)}.gif").status_code == 200
        deadline = time.monotonic() + 30
        while "req-42" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
    finally:
        stop(proc)
    lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
    assert lines and all({"ts", "level", "logger", "message"} <= set(x) for x in lines)
    ours = [x for x in lines if x.get("request_id") == "req-42"]
    assert ours and ours[-1]["email_id"] == eid and f"/api/v1/emails/{eid} 200" in ours[-1]["message"]
    assert not [x for x in lines if "/o/" in x["message"]], "a pixel hit was logged"
    # every log line is JSON, start-up included (the banner on stdout is not a log line)
    assert all(x.startswith("{") for x in log.read_text().splitlines()
               if x.strip() and not x.startswith("mailtrack serving on")), log.read_text()[:2000]
