"""Hostile input to the sending-domain API, the page's forms and /u/TOKEN: a clear 4xx, never a 500."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailtrack.domains.names import normalize
from mailtrack.errors import InputError
from mailtrack.store.db import Store
from tests.conftest import Api, make_config

NAMES = st.one_of(
    st.text(max_size=80),
    st.sampled_from(["", ".", "..", "a..b", "-a.example", "a-.example", "x" * 64 + ".example", "1.2.3.4",
                     "ex ample.com", "exämple.com", "xn--.com", "a.b.c.d.e", "\x00.com", "acme.example\r\nX: y",
                     "%2e%2e", "a" * 300, "例え.テスト", "acme.example."]),
)


@settings(max_examples=400, deadline=None)
@given(text=NAMES)
def test_normalize_is_a_name_or_a_422(text: str) -> None:
    try:
        name = normalize(text)
    except InputError as e:
        assert e.status_code == 422 and e.field == "domain"
        return
    assert name.isascii() and name == name.lower() and len(name) <= 253 and "." in name


@pytest.fixture
def api(sqlite_store: Store, tmp_path: Path) -> Api:
    return Api(sqlite_store, make_config(tmp_path, dns_resolver="127.0.0.1:9"))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(domain=NAMES, rp=st.one_of(st.none(), NAMES), selector=st.one_of(st.none(), st.text(max_size=70)))
def test_domain_api_never_500(api: Api, domain: str, rp: str | None, selector: str | None) -> None:
    r = api.post("/api/v1/domains", {"domain": domain, "return_path": rp, "selector": selector})
    assert r.status_code in (201, 409, 422), r.text
    path = quote(domain, safe="") or "x"
    for method, url in (("GET", f"/api/v1/domains/{path}"), ("POST", f"/api/v1/domains/{path}/rotate"),
                        ("DELETE", f"/api/v1/domains/{path}")):
        r = api.client.request(method, url, headers=api.h(), json={})
        assert r.status_code < 500, (method, url, r.status_code)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(token=st.text(min_size=1, max_size=300))
def test_unsubscribe_token_never_500(api: Api, token: str) -> None:
    path = "/u/" + quote(token, safe="")
    assert api.client.get(path).status_code in (404, 405, 307, 308)
    assert api.client.post(path, content=b"List-Unsubscribe=One-Click").status_code in (404, 405, 307, 308)
