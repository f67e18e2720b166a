"""Issue 10 §12: API keys can be listed (never shown) and revoked, in the CLI and the API, and may expire."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from mailtrack import deps
from mailtrack.app import create_app
from mailtrack.cli import main
from mailtrack.store import accounts
from mailtrack.store.db import Store, open_store
from mailtrack.store.ids import now
from tests.conftest import Api, make_config


def _env(tmp_path: Path) -> dict[str, str]:
    return {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/mailtrack.db", "MAILTRACK_SECRET_KEY": "test-secret"}


def _cli(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args), env=_env(tmp_path))
    return result.exit_code, result.output


def test_cli_lists_without_the_key_and_revokes_by_id_or_key(sqlite_store: Store, tmp_path: Path) -> None:
    code, out = _cli(tmp_path, "apikey", "create", "--account", "acme")
    assert code == 0
    first = out.strip().splitlines()[-1]
    code, out = _cli(tmp_path, "apikey", "create", "--account", "acme", "--expires", "90d")
    second = out.strip().splitlines()[-1]
    code, listing = _cli(tmp_path, "apikey", "list", "--account", "acme")
    assert code == 0 and first not in listing and second not in listing
    assert first[:10] in listing and second[:10] in listing
    code, out = _cli(tmp_path, "apikey", "list", "--account", "acme", "--json")
    rows = json.loads(out)
    assert [r["prefix"] for r in rows] == [first[:10], second[:10]]
    assert rows[0]["expires_at"] is None and rows[1]["expires_at"] is not None
    assert all(r["created_at"] and r["revoked_at"] is None for r in rows)
    assert "key" not in rows[0] and "key_hash" not in rows[0]

    assert _cli(tmp_path, "apikey", "revoke", str(rows[0]["id"]))[0] == 0
    code, out = _cli(tmp_path, "apikey", "revoke", second)  # the key itself
    assert code == 0 and f"revoked API key {rows[1]['id']}" in out
    rows = json.loads(_cli(tmp_path, "apikey", "list", "--account", "acme", "--json")[1])
    assert all(r["revoked_at"] for r in rows)
    with sqlite_store.read() as conn:
        assert accounts.account_for_key(conn, first) is None and accounts.account_for_key(conn, second) is None
    code, out = _cli(tmp_path, "apikey", "revoke", "99999")
    assert code != 0 and "no API key" in out
    assert _cli(tmp_path, "apikey", "list", "--account", "nobody")[0] != 0
    assert _cli(tmp_path, "apikey", "create", "--account", "acme", "--expires", "soon")[0] != 0


def test_api_lists_and_revokes_only_the_accounts_own_keys(api: Api) -> None:
    spare = api.new_key("acme")
    other = api.new_key("globex")
    r = api.get("/api/v1/apikeys")
    assert r.status_code == 200
    listed = r.json()["api_keys"]
    assert [k["prefix"] for k in listed] == [api.key[:10], spare[:10]]
    assert api.key not in r.text and spare not in r.text
    assert listed[0]["last_used_at"] is not None  # this very request used it
    other_id = api.get("/api/v1/apikeys", key=other).json()["api_keys"][0]["id"]
    r = api.client.delete(f"/api/v1/apikeys/{other_id}", headers=api.h())
    assert r.status_code == 404  # another account's key is not ours to see or revoke
    assert api.get("/api/v1/stats", key=other).status_code == 200
    assert api.client.delete("/api/v1/apikeys/abc", headers=api.h()).status_code == 404
    assert api.get("/api/v1/stats", key=spare).status_code == 200  # now cached
    r = api.client.delete(f"/api/v1/apikeys/{listed[1]['id']}", headers=api.h())
    assert r.status_code == 204
    r = api.get("/api/v1/stats", key=spare)
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    revoked = api.get("/api/v1/apikeys").json()["api_keys"][1]
    assert revoked["revoked_at"] is not None


def test_a_key_revoked_elsewhere_is_refused_by_every_process_within_the_cache_time(
    sqlite_store: Store, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert deps._KeyCache.TTL <= 30
    monkeypatch.setattr(deps._KeyCache, "TTL", 1.0)  # the same mechanism, a shorter wait
    config = make_config(tmp_path)
    with sqlite_store.write() as conn:
        key = accounts.create_api_key(conn, accounts.get_or_create_account(conn, "acme"))
    other_store = open_store(config.database_url)  # another process: its own store and cache entries
    try:
        other = TestClient(create_app(config, other_store))
        h = {"Authorization": f"Bearer {key}"}
        assert other.get("/api/v1/stats", headers=h).status_code == 200
        assert _cli(tmp_path, "apikey", "revoke", key)[0] == 0
        deadline = time.monotonic() + 15
        while other.get("/api/v1/stats", headers=h).status_code == 200:
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.1)
        assert other.get("/api/v1/stats", headers=h).status_code == 401
    finally:
        other_store.dispose()


def test_keys_expire(api: Api) -> None:
    with api.store.write() as conn:
        acct = accounts.get_or_create_account(conn, "acme")
        past = accounts.create_api_key(conn, acct, expires_at=now() - 1)
        soon = accounts.create_api_key(conn, acct, expires_at=now() + 1.5)
    assert api.get("/api/v1/stats", key=past).status_code == 401
    assert api.get("/api/v1/stats", key=soon).status_code == 200
    deadline = time.monotonic() + 15
    while api.get("/api/v1/stats", key=soon).status_code == 200:  # the cache never outlives the expiry
        assert time.monotonic() < deadline, "the expired key still works"
        time.sleep(0.1)
    assert api.get("/api/v1/stats", key=soon).status_code == 401
