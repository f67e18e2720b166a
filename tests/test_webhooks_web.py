"""The webhooks page: add an endpoint (secret shown once), see its state and attempts, enable, remove."""

from __future__ import annotations

import re
from pathlib import Path

from mailtrack.store.db import Store
from tests.conftest import Api, make_config
from tests.test_web import csrf_of, sign_in
from tests.test_web_seed import add_user
from tests.webhook_receiver import Receiver


def _signed_in(store: Store, tmp_path: Path, **over: str) -> Api:
    api = Api(store, make_config(tmp_path, **over))
    add_user(api.store)
    assert sign_in(api.client).status_code == 303
    return api


def test_add_shows_the_secret_once_then_remove(any_store: Store, tmp_path: Path) -> None:
    receiver = Receiver().start()
    try:
        api = _signed_in(any_store, tmp_path, webhook_allow_private="true")
        c = api.client
        page = c.get("/webhooks")
        assert page.status_code == 200 and "No webhook endpoints yet" in page.text
        r = c.post("/webhooks", data={"csrf": csrf_of(page.text), "url": receiver.url(), "events": ["sent", "opened"],
                                      "description": "ERP <b>", "batch": "on"})
        assert r.status_code == 201
        secret = re.search(r"whsec_[A-Za-z0-9+/=]+", r.text)
        assert secret is not None and "ERP &lt;b&gt;" in r.text
        again = c.get("/webhooks")
        assert secret.group(0) not in again.text and receiver.url() in again.text and "opened, sent" in again.text
        [wid] = re.findall(r'data-id="(we_[0-9a-f]+)"', again.text)
        r = c.post("/webhooks", data={"csrf": csrf_of(again.text), "action": "remove", "id": wid},
                   follow_redirects=False)
        assert r.status_code == 303
        assert "No webhook endpoints yet" in c.get("/webhooks").text
    finally:
        receiver.stop()


def test_private_urls_and_bad_actions_are_refused_without_a_server_error(sqlite_store: Store, tmp_path: Path) -> None:
    api = _signed_in(sqlite_store, tmp_path)  # private targets not allowed
    c = api.client
    token = csrf_of(c.get("/webhooks").text)
    r = c.post("/webhooks", data={"csrf": token, "url": "http://127.0.0.1:1/x"})
    assert r.status_code == 422 and "loopback" in r.text
    for data in ({"url": "javascript:alert(1)"}, {"url": "x" * 3000}, {"action": "remove", "id": "nope"},
                 {"action": "enable", "id": "\x00"}, {"action": "explode"}):
        r = c.post("/webhooks", data={"csrf": token, **data}, follow_redirects=False)
        assert 400 <= r.status_code < 500, (data, r.status_code)
