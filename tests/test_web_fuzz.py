"""Hostile input on every page and form: never a 500, whatever the fields hold."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mailtrack.store.db import Store
from tests.conftest import Api, make_config
from tests.test_web import csrf_of, sign_in
from tests.test_web_seed import add_user


@pytest.fixture
def signed_in(sqlite_store: Store, tmp_path: Path) -> Api:
    api = Api(sqlite_store, make_config(tmp_path))
    add_user(api.store)
    assert sign_in(api.client).status_code == 303
    return api


FIELD = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["", "³", "-1", "0", "99999999999999999999999", "on", "off", "inherit", "a@b.test",
                     "<script>alert(1)</script>", "\x00", "\r\nX: y", "%00", "../../etc/passwd"]),
)
FORMS = ["/settings/tracking", "/settings/clients", "/settings/clients/1/tracking", "/settings/clients/³/tracking",
         "/suppressions", "/suppressions/remove", "/logout"]
FIELDS = ["enabled", "tracking", "external_ref", "name", "address", "reason", "q", "next"]
PAGES = ["/emails", "/suppressions", "/settings", "/tasks/", "/embed/notes/", "/emails/"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(form=st.sampled_from(FORMS), data=st.dictionaries(st.sampled_from(FIELDS), FIELD, max_size=5))
def test_forms_never_fail_with_a_server_error(signed_in: Api, form: str, data: dict[str, Any]) -> None:
    c = signed_in.client
    token = csrf_of(c.get("/settings").text)
    r = c.post(form, data={**data, "csrf": token}, follow_redirects=False)
    assert r.status_code < 500, (form, data, r.status_code)
    if form == "/logout":  # sign in again for the next example
        assert sign_in(c).status_code == 303


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(page=st.sampled_from(PAGES), tail=FIELD, params=st.dictionaries(
    st.sampled_from(["page", "status", "source_type", "client", "since", "until", "q", "reference", "key",
                     "token"]), FIELD, max_size=4))
@example(page="/emails", tail="", params={"page": "³"})  # str.isdigit() accepts it; int() does not
def test_pages_never_fail_with_a_server_error(signed_in: Api, page: str, tail: str, params: dict[str, Any]) -> None:
    path = page + quote(tail, safe="") if page.endswith("/") else page
    r = signed_in.client.get(path, params=params, follow_redirects=False)
    assert r.status_code < 500, (path, params, r.status_code)
