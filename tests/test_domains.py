"""Sending domains: claiming, the records to publish, DNS checks against a real server, key life cycle.

DNS answers come from a real UDP server on loopback (tests/helpers/dns_server.py); signatures are
verified by Perl Mail::DKIM against exactly the records `mailtrack domain show --json` prints.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from mailtrack.cli import main
from mailtrack.domains import keys, service
from mailtrack.store.db import Store
from mailtrack.store.schema import dkim_keys
from tests.conftest import Api, make_config
from tests.helpers.dns_server import Zone, dns_server


@pytest.fixture
def dns() -> Iterator[tuple[Zone, str]]:
    with dns_server() as served:
        yield served


def publish(zone: Zone, records: list[dict[str, Any]], *, only: str | None = None) -> None:
    """Publish records as a user would copy them into their DNS provider's form."""
    for r in records:
        if only is not None and only not in r["name"]:
            continue
        zone.set(r["name"], r["type"], r["value"])


def statuses(view: dict[str, Any]) -> dict[str, str]:
    return {f"{r['type']} {r['name']}": r["status"] for r in view["records"]}


def test_api_claims_checks_and_refuses_clearly(any_store: Store, dns: tuple[Zone, str], tmp_path: Path) -> None:
    zone, resolver = dns
    api = Api(any_store, make_config(tmp_path, dns_resolver=resolver))
    r = api.post("/api/v1/domains", {"domain": "Acme.Example.", "return_path": "bounces.acme.example"})
    assert r.status_code == 201, r.text
    view = r.json()
    assert view["domain"] == "acme.example" and view["signing"] is False
    kinds = [(rec["type"], rec["name"]) for rec in view["records"]]
    sel = view["records"][0]["name"].split(".")[0]
    assert kinds == [("TXT", f"{sel}._domainkey.acme.example"), ("TXT", "acme.example"),
                     ("TXT", "_dmarc.acme.example"), ("CNAME", "bounces.acme.example")]
    assert all(set(rec) >= {"type", "name", "value", "purpose", "status"} for rec in view["records"])
    assert view["records"][0]["value"].startswith("v=DKIM1; k=rsa; p=MII")
    assert "p=none" in view["records"][2]["value"] and "rua=mailto:" in view["records"][2]["value"]

    # another account: 409 naming the domain; bad names and return paths: 422 naming them
    other = api.new_key("globex")
    r = api.post("/api/v1/domains", {"domain": "acme.example"}, key=other)
    assert r.status_code == 409 and "acme.example" in r.json()["error"]["message"]
    assert api.get("/api/v1/domains/acme.example", key=other).status_code == 404
    assert api.get("/api/v1/domains", key=other).json() == {"domains": []}
    for bad, field in (({"domain": "not a domain"}, "domain"), ({"domain": "-x.example"}, "domain"),
                       ({"domain": "localhost"}, "domain"), ({"domain": "b.example", "return_path": "x.other"},
                                                            "return_path")):
        r = api.post("/api/v1/domains", bad)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["field"] == field
    assert api.post("/api/v1/domains", {"domain": "a.example", "x": 1}).status_code == 422
    # a selector collision is a 409 naming the selector
    r = api.post("/api/v1/domains/acme.example/rotate", {"selector": sel})
    assert r.status_code == 409 and sel in r.json()["error"]["message"]

    # nothing published: every record is missing, nothing raises
    r = api.post("/api/v1/domains/acme.example/check", {})
    assert r.status_code == 200, r.text
    assert set(statuses(r.json()).values()) == {"missing"} and r.json()["signing"] is False

    # wrong values are "wrong"
    zone.set(f"{sel}._domainkey.acme.example", "TXT", "v=DKIM1; k=rsa; p=MIIBsomebodyelseskey")
    zone.set("acme.example", "TXT", "v=spf1 include:_spf.elsewhere.example -all")
    zone.set("_dmarc.acme.example", "TXT", "hello")
    zone.set("bounces.acme.example", "CNAME", "bounces.elsewhere.example")
    got = statuses(api.post("/api/v1/domains/acme.example/check", {}).json())
    assert set(got.values()) == {"wrong"}, got

    # published as shown: all ok, and signing starts
    publish(zone, view["records"])
    checked = api.post("/api/v1/domains/acme.example/check", {}).json()
    assert set(statuses(checked).values()) == {"ok"}, checked
    assert checked["signing"] is True and checked["selector"] == sel
    assert [d["domain"] for d in api.get("/api/v1/domains").json()["domains"]] == ["acme.example"]

    # the private key never leaves the server, and is encrypted at rest
    with any_store.read() as conn:
        stored = conn.execute(select(dkim_keys.c.private_key)).scalar_one()
    everything = json.dumps([api.get("/api/v1/domains").json(), api.get("/api/v1/domains/acme.example").json()])
    assert stored.startswith("v1:") and stored.split(":", 1)[1][:40] not in everything
    assert "PRIVATE" not in everything and "PRIVATE" not in stored
    with pytest.raises(keys.DkimKeyError):
        keys.decrypt(stored, "another-secret", "acme.example")
    with pytest.raises(keys.DkimKeyError):
        keys.decrypt(stored, "test-secret", "other.example")  # a row moved to another domain does not decrypt
    assert keys.decrypt(stored, "test-secret", "acme.example").key_size == 2048

    assert api.client.delete("/api/v1/domains/acme.example", headers=api.h(other)).status_code == 404
    assert api.client.delete("/api/v1/domains/acme.example", headers=api.h()).status_code == 204
    assert api.get("/api/v1/domains/acme.example").status_code == 404


def test_dns_errors_are_check_results(any_store: Store, tmp_path: Path) -> None:
    # a resolver that does not answer: the check reports "error", it does not raise
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))  # bound but never read: queries time out
        config = make_config(tmp_path, dns_resolver=f"127.0.0.1:{s.getsockname()[1]}")
        with any_store.write() as conn:
            from mailtrack.store import accounts

            acct = accounts.get_or_create_account(conn, "acme")
        service.add(any_store, config, acct, "acme.example")
        from mailtrack.domains import dnscheck

        view = service.check(any_store, config, "acme.example", resolver=dnscheck.make_resolver(
            config.dns_resolver, lifetime=0.5))
    assert set(statuses(dict(view)).values()) == {"error"}
    assert all("failed" in r["detail"] for r in view["records"])


def cli(tmp_path: Path, resolver: str, *args: str, **env: str) -> Any:
    base = {"MAILTRACK_DATABASE_URL": f"sqlite:///{tmp_path}/mailtrack.db", "MAILTRACK_SECRET_KEY": "test-secret",
            "MAILTRACK_DNS_RESOLVER": resolver, **env}
    return CliRunner().invoke(main, list(args), env=base, catch_exceptions=False)


def test_cli_add_show_check_rotate_remove(dns: tuple[Zone, str], tmp_path: Path) -> None:
    zone, resolver = dns
    assert cli(tmp_path, resolver, "apikey", "create", "--account", "acme").exit_code == 0
    assert cli(tmp_path, resolver, "apikey", "create", "--account", "globex").exit_code == 0
    r = cli(tmp_path, resolver, "domain", "add", "acme.example", "--account", "acme", "--selector", "s1")
    assert r.exit_code == 0, r.output
    assert "s1._domainkey.acme.example" in r.output and "not signing yet" in r.output
    r = cli(tmp_path, resolver, "domain", "add", "acme.example", "--account", "globex")
    assert r.exit_code != 0 and "another account" in r.output
    r = cli(tmp_path, resolver, "domain", "add", "acme..example", "--account", "acme")
    assert r.exit_code != 0 and "'acme..example' is not a domain name" in r.output
    shown = json.loads(cli(tmp_path, resolver, "domain", "show", "acme.example", "--json").output)
    assert shown["domain"] == "acme.example" and shown["records"][0]["name"] == "s1._domainkey.acme.example"
    publish(zone, shown["records"])
    r = cli(tmp_path, resolver, "domain", "check", "acme.example")
    assert r.exit_code == 0 and "signing with selector s1" in r.output and "[ok] TXT s1._domainkey" in r.output

    # rotation: both selectors published; signing stays on s1 until s2 checks out
    r = cli(tmp_path, resolver, "domain", "rotate", "acme.example", "--selector", "s2", "--json")
    rotated = json.loads(r.output)
    assert [x["name"] for x in rotated["records"][:2]] == ["s1._domainkey.acme.example", "s2._domainkey.acme.example"]
    assert rotated["selector"] == "s1"
    r = cli(tmp_path, resolver, "domain", "rotate", "acme.example")
    assert r.exit_code != 0 and "waiting to be published" in r.output
    assert json.loads(cli(tmp_path, resolver, "domain", "check", "acme.example", "--json").output)["selector"] == "s1"
    publish(zone, rotated["records"], only="s2._domainkey")
    after = json.loads(cli(tmp_path, resolver, "domain", "check", "acme.example", "--json",
                           MAILTRACK_DKIM_RETIRE_AFTER="0s").output)
    assert after["selector"] == "s2"
    assert "old key" in after["records"][0]["purpose"]  # s1 is still published while it retires
    # once the grace period (here 0 s) is over, the next check drops the old selector
    gone = json.loads(cli(tmp_path, resolver, "domain", "check", "acme.example", "--json").output)
    assert [x["name"] for x in gone["records"] if "_domainkey" in x["name"]] == ["s2._domainkey.acme.example"]

    listing = cli(tmp_path, resolver, "domain", "list").output
    assert "acme.example" in listing and "signing" in listing
    assert cli(tmp_path, resolver, "domain", "remove", "acme.example").exit_code == 0
    assert "no sending domains" in cli(tmp_path, resolver, "domain", "list").output


def test_unverified_from_policy_and_authenticated_flag(any_store: Store, dns: tuple[Zone, str],
                                                       tmp_path: Path) -> None:
    from mailtrack.compose import EmailSource
    from mailtrack.domains.signer import DkimSigner

    zone, resolver = dns
    refuse = Api(any_store, make_config(tmp_path, dns_resolver=resolver, unverified_from="refuse"))
    email = {"from": "Acme <ops@news.acme.example>", "to": ["a@x.test"], "subject": "s", "text": "t"}
    r = refuse.post("/api/v1/emails", email)
    assert r.status_code == 422 and r.json()["error"]["field"] == "from"
    assert "news.acme.example" in r.json()["error"]["message"]
    r = refuse.post("/api/v1/emails/batch", {"emails": [{**email, "from": "x@x.test"}, email]})
    assert r.status_code == 422 and r.json()["error"]["field"] == "emails[0].from"

    view = refuse.post("/api/v1/domains", {"domain": "acme.example"}).json()
    publish(zone, view["records"])
    assert refuse.post("/api/v1/domains/acme.example/check", {}).json()["signing"] is True
    from mailtrack.domains import policy

    policy.CACHE._entries.clear()  # the API caches verified domains for a few seconds
    r = refuse.post("/api/v1/emails", email)  # a subdomain of a verified domain signs as it (relaxed alignment)
    assert r.status_code == 202, r.text
    got = refuse.get(f"/api/v1/emails/{r.json()['id']}").json()
    assert got["authenticated"] is True and "acme.example" in got["why"]

    # the default policy sends, and says why the mail is not authenticated
    send = Api(any_store, make_config(tmp_path, dns_resolver=resolver))
    other = send.new_key("globex")
    r = send.post("/api/v1/emails", email, key=other)  # another account's From on acme.example: not its domain
    assert r.status_code == 202
    got = send.get(f"/api/v1/emails/{r.json()['id']}", key=other).json()
    assert got["authenticated"] is False and "news.acme.example is not a verified sending domain" in got["why"]

    # and the signer never signs another account's mail with acme.example's key
    signer = DkimSigner(any_store, send.config)
    src = EmailSource(id="e", from_addr="ops@acme.example", subject="s", account_id=1)
    assert signer.identity(src) is not None
    assert signer.identity(EmailSource(id="e", from_addr="ops@acme.example", subject="s", account_id=2)) is None


def test_sending_domains_page(sqlite_store: Store, dns: tuple[Zone, str], tmp_path: Path) -> None:
    import re

    from tests.test_web_seed import PASSWORD, add_user

    zone, resolver = dns
    api = Api(sqlite_store, make_config(tmp_path, dns_resolver=resolver))
    add_user(sqlite_store)
    c = api.client

    def csrf(html: str) -> str:
        m = re.search(r'name="csrf" value="([^"]+)"', html)
        assert m, "no CSRF field"
        return m.group(1)

    login = c.get("/login")
    assert c.post("/login", data={"email": "ops@acme.test", "password": PASSWORD, "csrf": csrf(login.text),
                                  "next": "/sending-domains"}, follow_redirects=False).status_code == 303
    page = c.get("/sending-domains")
    assert page.status_code == 200 and "No sending domain yet" in page.text
    r = c.post("/sending-domains", data={"domain": "<b>bad", "csrf": csrf(page.text)})
    assert r.status_code == 422 and "is not a domain name" in r.text and "<b>bad" not in r.text
    r = c.post("/sending-domains", data={"domain": "acme.example", "csrf": csrf(page.text)})
    assert r.status_code == 200 and "Sending domain added" in r.text  # after the redirect
    assert "_domainkey.acme.example" in r.text and 'data-copy="v-acme.example-1"' in r.text
    assert "Not signing yet" in r.text and "unchecked" in r.text
    shown = service.get(sqlite_store, api.config, "acme.example")
    publish(zone, list(shown["records"]))  # type: ignore[arg-type]
    r = c.post("/sending-domains/check", data={"domain": "acme.example", "csrf": csrf(r.text)})
    assert r.status_code == 200 and "Signing with " in r.text and "status-ok" in r.text
    assert "PRIVATE" not in r.text
    assert c.post("/sending-domains/check", data={"domain": "acme.example"}).status_code == 403  # no CSRF token


def test_email_page_says_whether_the_mail_is_authenticated(sqlite_store: Store, tmp_path: Path) -> None:
    import re

    from tests.test_web_seed import PASSWORD, add_user

    api = Api(sqlite_store, make_config(tmp_path))
    add_user(sqlite_store)
    login = api.client.get("/login")
    token = re.search(r'name="csrf" value="([^"]+)"', login.text).group(1)  # type: ignore[union-attr]
    assert api.client.post("/login", data={"email": "ops@acme.test", "password": PASSWORD, "csrf": token,
                                           "next": "/emails"}, follow_redirects=False).status_code == 303
    r = api.post("/api/v1/emails", {"from": "ops@unverified.example", "to": ["a@x.test"], "subject": "s",
                                    "text": "t"})
    page = api.client.get(f"/emails/{r.json()['id']}").text
    assert "not authenticated" in page and "unverified.example is not a verified sending domain" in page
