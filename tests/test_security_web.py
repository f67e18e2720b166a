"""Issue 10 §3-§5: web sign-in — bounded memory, throttling that slows only the attacker, revocable sessions."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from fastapi.testclient import TestClient

from mailtrack.app import create_app
from mailtrack.cli import main
from mailtrack.store import accounts
from mailtrack.store.db import Store
from mailtrack.web.auth import Throttle
from tests.conftest import Api, make_config
from tests.test_web_seed import PASSWORD, add_user

_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    found = _CSRF.search(html)
    assert found, "no CSRF field on the page"
    return found.group(1)


def sign_in(client: TestClient, email: str = "ops@acme.test", password: str = PASSWORD) -> Any:
    token = csrf_of(client.get("/login").text)
    return client.post("/login", data={"email": email, "password": password, "csrf": token, "next": "/emails"},
                       follow_redirects=False)


@pytest.fixture
def lite(sqlite_store: Store, tmp_path: Path) -> Api:
    return Api(sqlite_store, make_config(tmp_path))


def _client(api: Api, ip: str) -> TestClient:
    return TestClient(api.app, client=(ip, 40000))


def _signed_in(api: Api, ip: str = "10.0.0.1") -> TestClient:
    c = _client(api, ip)
    assert sign_in(c).status_code == 303
    return c


def _with_cookie(api: Api, cookie: str, app: object | None = None) -> TestClient:
    c = TestClient(app or api.app, cookies={"mt_session": cookie})  # type: ignore[arg-type]
    return c


def _is_signed_out(c: TestClient) -> bool:
    r = c.get("/emails", follow_redirects=False)
    return r.status_code == 303 and r.headers["location"].startswith("/login")


# --- §5 sessions end server-side ------------------------------------------------------------

def test_logout_ends_the_session_for_pages_and_forms(api: Api) -> None:
    add_user(api.store)
    c = _signed_in(api)
    cookie = c.cookies["mt_session"]
    csrf = csrf_of(c.get("/settings").text)
    other_process = create_app(api.config, api.store)  # another API process on the same database
    assert not _is_signed_out(_with_cookie(api, cookie, other_process))
    assert c.post("/logout", data={"csrf": csrf}, follow_redirects=False).status_code == 303
    # the attacker kept a copy of the cookie and the form token
    stolen = _with_cookie(api, cookie)
    assert _is_signed_out(stolen)
    assert _is_signed_out(_with_cookie(api, cookie, other_process))
    r = stolen.post("/settings/tracking", data={"csrf": csrf}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/login")
    with api.store.read() as conn:
        assert accounts.get_account(conn, accounts.get_or_create_account(conn, "acme"))["track_default"]
    assert stolen.get("/embed/notes/T-1", follow_redirects=False).status_code == 401


def test_password_change_ends_every_session(api: Api) -> None:
    add_user(api.store)
    one, two = _signed_in(api, "10.0.0.1"), _signed_in(api, "10.0.0.2")
    add_user(api.store, password="a brand new password")
    assert _is_signed_out(_with_cookie(api, one.cookies["mt_session"]))
    assert _is_signed_out(_with_cookie(api, two.cookies["mt_session"]))


def test_removing_a_user_ends_their_sessions(lite: Api, tmp_path: Path) -> None:
    add_user(lite.store)
    cookie = _signed_in(lite).cookies["mt_session"]
    env = {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/mailtrack.db", "MAILTRACK_SECRET_KEY": "test-secret"}
    result = CliRunner().invoke(main, ["user", "remove", "--email", "OPS@acme.test"], env=env)
    assert result.exit_code == 0, result.output
    assert _is_signed_out(_with_cookie(lite, cookie))
    again = CliRunner().invoke(main, ["user", "remove", "--email", "ops@acme.test"], env=env)
    assert again.exit_code != 0 and "no user" in again.output


def test_forged_or_huge_cookies_are_no_session(lite: Api) -> None:
    add_user(lite.store)
    for value in ("x", "a" * 43, "a" * 5000, "eyJ1IjoxfQ.forged"):
        assert _is_signed_out(_with_cookie(lite, value))


# --- §3 bounded memory -----------------------------------------------------------------------

def test_oversize_email_is_refused_before_any_work(lite: Api) -> None:
    add_user(lite.store)
    c = _client(lite, "10.0.0.1")
    token = csrf_of(c.get("/login").text)
    throttle: Throttle = lite.app.state.web_throttle
    for i in range(5):
        huge = f"{i}" + "a" * 900_000 + "@acme.test"
        r = c.post("/login", data={"email": huge, "password": "x", "csrf": token})
        assert r.status_code == 413 and "too large" in r.text
    r = c.post("/login", data={"email": "a" * 400 + "@acme.test", "password": "x", "csrf": token})
    assert r.status_code == 200 and "too long" in r.text and "a" * 400 not in r.text
    r = c.post("/login", data={"email": "ops@acme.test", "password": "p" * 5000, "csrf": token})
    assert "too long" in r.text
    assert len(throttle) == 0  # nothing was remembered for them
    assert sign_in(c).status_code == 303


def test_failed_attempt_table_is_bounded_and_expires() -> None:
    t = Throttle(limit=3, window=0.5, per_ip=10**6, max_entries=50)
    for i in range(1000):
        t.failed(f"10.1.{i // 250}.{i % 250}", f"user{i}@acme.test")
    assert len(t) <= 50
    t.failed("10.9.9.9", "x@acme.test")
    deadline = time.monotonic() + 10
    while len(t) > 2 and time.monotonic() < deadline:  # entries older than the window are dropped
        time.sleep(0.1)
        t.failed("10.9.9.9", "x@acme.test")
    assert len(t) <= 2


# --- §4 throttling slows only the attacker -------------------------------------------------------

def _try(c: TestClient, email: str, password: str) -> str:
    token = csrf_of(c.get("/login").text)
    return c.post("/login", data={"email": email, "password": password, "csrf": token},
                  follow_redirects=False).text


def test_wrong_passwords_from_a_stranger_do_not_lock_out_the_user(lite: Api) -> None:
    add_user(lite.store)
    attacker = _client(lite, "203.0.113.7")
    for _ in range(12):
        _try(attacker, "ops@acme.test", "guess")
    assert "Too many failed attempts" in _try(attacker, "ops@acme.test", PASSWORD)  # he is slowed
    assert sign_in(_client(lite, "198.51.100.1")).status_code == 303  # the user is not


def test_spraying_many_addresses_from_one_address_is_slowed(lite: Api) -> None:
    add_user(lite.store)
    assert Throttle().per_ip < 30
    lite.app.state.web_throttle = Throttle(per_ip=5)  # fewer (costly) failed hashes than the default 20
    sprayer = _client(lite, "203.0.113.8")
    texts = [_try(sprayer, f"user{i}@acme.test", "Winter2026!") for i in range(8)]
    assert all("Wrong email address or password" in t for t in texts[:5])
    assert all("from your network" in t for t in texts[5:])
    assert "from your network" in _try(sprayer, "ops@acme.test", PASSWORD)
    assert sign_in(_client(lite, "198.51.100.2")).status_code == 303


# --- §13 no API key in a URL ---------------------------------------------------------------------

def test_embed_refuses_an_api_key_in_the_url(api: Api) -> None:
    from tests.test_web_seed import seed_every_status

    seed_every_status(api.store, add_user(api.store), reference="T-7")
    anon = TestClient(api.app)
    for key in (api.key, "mt_wrong", ""):
        r = anon.get("/embed/notes/T-7", params={"key": key})
        assert r.status_code == 401 and "Task sheet T-7" not in r.text
    assert "never accepted in a URL" in anon.get("/embed/notes/T-7", params={"key": api.key}).text
    embed = api.get("/api/v1/notes/T-7").json()["embed_url"]
    r = anon.get(embed[embed.index("/embed/"):])  # the scoped token still works
    assert r.status_code == 200 and "Task sheet T-7" in r.text
    # a valid token with a key next to it is refused too: the key must not travel in URLs at all
    assert anon.get(embed[embed.index("/embed/"):] + f"&key={api.key}").status_code == 401
