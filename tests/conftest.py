"""Shared fixtures: a real SQLite file per test, and the real PostgreSQL (fresh schema per run)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from mailtrack.config import Config, load_config
from mailtrack.store.db import Store, open_store

PG_URL = os.environ.get("MAILTRACK_TEST_PG_URL")
REPO = Path(__file__).resolve().parents[1]


def make_config(tmp_path: Path, **overrides: Any) -> Config:
    env = {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/mailtrack.db", "MAILTRACK_SECRET_KEY": "test-secret"}
    env.update({f"MAILTRACK_{k.upper()}": str(v) for k, v in overrides.items()})
    return load_config(env=env)


@pytest.fixture(scope="session")
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a schema created for this test run and dropped after."""
    if not PG_URL:
        pytest.skip("MAILTRACK_TEST_PG_URL not set")
    schema = f"mt_test_{secrets.token_hex(4)}"
    admin = create_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options=-csearch_path%3D{schema}"
    with admin.begin() as conn:
        conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _truncate_pg(store: Store) -> None:
    from mailtrack.store.schema import metadata

    names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)  # every table, new ones included
    with store.engine.begin() as conn:
        conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.pg)])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same test on SQLite and, when MAILTRACK_TEST_PG_URL is set, on PostgreSQL."""
    if request.param == "sqlite":
        store = open_store(f"sqlite:///{tmp_path}/mailtrack.db")
    else:
        url = request.getfixturevalue("pg_schema_url")
        store = open_store(url)
        _truncate_pg(store)
    yield store
    store.dispose()


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = open_store(f"sqlite:///{tmp_path}/mailtrack.db")
    yield store
    store.dispose()


class Api:
    """A TestClient on a real app and store, with helpers for keys."""

    def __init__(self, store: Store, config: Config) -> None:
        from fastapi.testclient import TestClient

        from mailtrack.app import create_app

        self.store = store
        self.config = config
        self.app = create_app(config, store)
        self.client = TestClient(self.app)
        self.key = self.new_key("acme")

    def new_key(self, account: str) -> str:
        from mailtrack.store import accounts

        with self.store.write() as conn:
            return accounts.create_api_key(conn, accounts.get_or_create_account(conn, account))

    def h(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.key}"}

    def post(self, path: str, json: Any, key: str | None = None, **kw: Any) -> Any:
        headers = {**self.h(key), **kw.pop("headers", {})}
        return self.client.post(path, json=json, headers=headers, **kw)

    def get(self, path: str, key: str | None = None, **kw: Any) -> Any:
        return self.client.get(path, headers=self.h(key), **kw)

    def close(self) -> None:
        """Write what the test's hits left queued and stop the hit writer (before the next test's TRUNCATE)."""
        fast = getattr(self.app.state, "tracking", None)
        recorder = fast.started_recorder if fast is not None else None
        if recorder is not None:
            recorder.close(timeout=30.0)

    def settle(self, timeout: float = 30.0) -> None:
        """Wait until every pixel/click hit answered so far is written (they are written after the answer)."""
        fast = getattr(self.app.state, "tracking", None)
        recorder = fast.started_recorder if fast is not None else None
        if recorder is not None:
            assert recorder.flush(timeout), f"tracking hits not written within {timeout} s"


@pytest.fixture
def api(any_store: Store, tmp_path: Path) -> Iterator[Api]:
    a = Api(any_store, make_config(tmp_path))
    yield a
    a.close()


def email_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "from": "Acme Ops <ops@acme.test>", "to": ["alice@example.test"], "cc": ["bob@example.test"],
        "bcc": ["carol@example.test"], "subject": "Task sheet T-42", "text": "Hello",
        "source": {"type": "task_sheet", "reference": "T-42"},
    }
    body.update(over)
    return body
