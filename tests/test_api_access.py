"""Every API endpoint, as every kind of token: who gets what, and that a refused call changes nothing.

The endpoints come from the API's own declarations (portal.api.spec), so a new endpoint fails this test
until its expected answers are written down here. Each case starts from the same data in a.example and
b.example; the targets are in a.example.
"""

from __future__ import annotations

import functools

import pytest

from portal.access import Actor
from portal.api import spec
from portal.passwords import hash_password
from portal.rules import api_tokens as token_rules
from tests.conftest import make_client

KINDS = ("root", "root_in_b", "admin_a", "admin_b", "help_a", "root_read", "none")

# endpoint -> (method, path, body) with a.example targets, and the status for each kind of KINDS.
API_EXPECTED = {
    "openapi": (("GET", "/openapi.json", None), (200, 200, 200, 200, 200, 200, 200)),
    "me": (("GET", "/me", None), (200, 200, 200, 200, 200, 200, 401)),
    "list_domains": (("GET", "/domains", None), (200, 200, 200, 200, 200, 200, 401)),
    "get_domain": (("GET", "/domains/a.example", None), (200, 404, 200, 404, 404, 200, 401)),
    "list_mailboxes": (("GET", "/domains/a.example/mailboxes", None), (200, 404, 200, 404, 404, 200, 401)),
    "create_mailbox": (("POST", "/domains/a.example/mailboxes", {"local_part": "new"}),
                       (201, 404, 201, 404, 404, 403, 401)),
    "get_mailbox": (("GET", "/mailboxes/user@a.example", None), (200, 404, 200, 404, 200, 200, 401)),
    "change_mailbox": (("PATCH", "/mailboxes/user@a.example", {"display_name": "Changed"}),
                       (200, 404, 200, 404, 404, 403, 401)),
    "delete_mailbox": (("DELETE", "/mailboxes/user@a.example", None), (204, 404, 204, 404, 404, 403, 401)),
    "reset_password": (("POST", "/mailboxes/user@a.example/password-reset", None),
                       (200, 404, 200, 404, 200, 403, 401)),
    "list_aliases": (("GET", "/domains/a.example/aliases", None), (200, 404, 200, 404, 404, 200, 401)),
    "create_alias": (("POST", "/domains/a.example/aliases", {"address": "new@a.example",
                                                            "destinations": ["user@a.example"]}),
                     (201, 404, 201, 404, 404, 403, 401)),
    "replace_alias": (("PUT", "/domains/a.example/aliases/team@a.example", {"destinations": ["root@a.example"]}),
                      (200, 404, 200, 404, 404, 403, 401)),
    "delete_alias": (("DELETE", "/domains/a.example/aliases/team@a.example", None),
                     (204, 404, 204, 404, 404, 403, 401)),
    "get_forwarding": (("GET", "/mailboxes/user@a.example/forwarding", None), (200, 404, 200, 404, 404, 200, 401)),
    "replace_forwarding": (("PUT", "/mailboxes/user@a.example/forwarding",
                            {"destinations": ["outside@elsewhere.example"], "keep_copy": True}),
                           (200, 404, 200, 404, 404, 403, 401)),
    "unlock_mailbox": (("POST", "/mailboxes/user@a.example/unlock", None), (200, 404, 200, 404, 200, 403, 401)),
    "disable_mailbox": (("POST", "/mailboxes/user@a.example/disable", {"reason": "left"}),
                        (200, 404, 200, 404, 200, 403, 401)),
    "enable_mailbox": (("POST", "/mailboxes/off@a.example/enable", None), (200, 404, 200, 404, 200, 403, 401)),
    "create_domain": (("POST", "/domains", {"name": "c.example"}), (201, 403, 403, 403, 403, 403, 401)),
    "change_domain": (("PATCH", "/domains/a.example", {"max_mailboxes": 50}), (200, 404, 403, 404, 404, 403, 401)),
    # The superadmin's own mailbox is in a.example: nobody deletes the domain they sign in from.
    "delete_domain": (("DELETE", "/domains/b.example", None), (204, 403, 404, 403, 404, 403, 401)),
    "list_roles": (("GET", "/roles", None), (200, 403, 403, 403, 403, 200, 401)),
    "grant_role": (("POST", "/roles", {"address": "user@a.example", "role": "helpdesk", "domain": "a.example"}),
                   (201, 403, 403, 403, 403, 403, 401)),
    "revoke_role": (("DELETE", "/roles/HELP_ROLE", None), (204, 403, 403, 403, 403, 403, 401)),
    "audit_log": (("GET", "/audit", None), (200, 200, 200, 200, 403, 200, 401)),
}

HOLDERS = {"root": "root@a.example", "root_in_b": "root@a.example", "root_read": "root@a.example",
           "admin_a": "admin@a.example", "admin_b": "admin@b.example", "help_a": "help@a.example"}


@functools.cache
def _hash() -> str:
    return hash_password("a long enough test password 5")


def _build(db) -> None:
    db.execute("INSERT INTO virtual_domains (name) VALUES ('a.example'), ('b.example')")
    for address in ("root@a.example", "admin@a.example", "help@a.example", "user@a.example", "off@a.example",
                    "admin@b.example", "bob@b.example"):
        db.execute("INSERT INTO virtual_users (domain_id, email, password) SELECT id, %s, %s FROM virtual_domains"
                   " WHERE name = split_part(%s, '@', 2)", (address, _hash(), address))
    db.execute("""
        INSERT INTO portal_roles (user_id, role, domain_id)
        SELECT u.id, r.role, d.id FROM (VALUES ('root@a.example', 'superadmin', NULL),
                                               ('admin@a.example', 'domain_admin', 'a.example'),
                                               ('admin@b.example', 'domain_admin', 'b.example'),
                                               ('help@a.example', 'helpdesk', 'a.example')) r (email, role, domain)
          JOIN virtual_users u ON u.email = r.email LEFT JOIN virtual_domains d ON d.name = r.domain
    """)
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@a.example',"
               " 'user@a.example' FROM virtual_domains WHERE name = 'a.example'")
    db.execute("UPDATE virtual_users SET active = false, disabled_reason = 'away' WHERE email = 'off@a.example'")
    db.execute("INSERT INTO portal_login_throttle (kind, key, failures, window_started_at, locked_until)"
               " VALUES ('account', 'user@a.example', 9, now(), now() + interval '10 minutes')")


def _token(app, db, kind: str) -> str | None:
    if kind == "none":
        return None
    address = HOLDERS[kind]
    mailbox_id = db.execute("SELECT id FROM virtual_users WHERE email = %s", (address,)).fetchone()["id"]
    with app.app_context():
        from portal.db import get_db

        return token_rules.create_token(get_db(), Actor(address, None, mailbox_id), name=kind,
                                        domains=["b.example"] if kind == "root_in_b" else None,
                                        read_only=kind == "root_read", expires_at=None)


def _state(db) -> dict:
    return {
        "mailboxes": db.execute("SELECT email, active, quota_bytes, display_name, password, password_must_change"
                                " FROM virtual_users ORDER BY email").fetchall(),
        "aliases": db.execute("SELECT source, destination FROM virtual_aliases ORDER BY 1, 2").fetchall(),
        "domains": db.execute("SELECT name, active, max_mailboxes FROM virtual_domains ORDER BY 1").fetchall(),
        "roles": db.execute("SELECT user_id, role, domain_id FROM portal_roles ORDER BY 1, 2, 3").fetchall(),
        "locks": db.execute("SELECT kind, key, failures FROM portal_login_throttle ORDER BY 1, 2").fetchall(),
        "changes": db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action NOT LIKE 'api_token.%'"
                              ).fetchone()["n"],
    }


def test_every_endpoint_is_in_the_table():
    assert set(API_EXPECTED) == {endpoint.name for endpoint in spec.ENDPOINTS}


@pytest.mark.parametrize("name", sorted(API_EXPECTED))
@pytest.mark.parametrize("kind", KINDS)
def test_api_matrix(app, db, name, kind):
    _build(db)
    token = _token(app, db, kind)
    (method, path, body), expected = API_EXPECTED[name]
    if "HELP_ROLE" in path:  # the helpdesk role of help@a.example
        held = db.execute("SELECT r.id FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
                          " WHERE u.email = 'help@a.example'").fetchone()
        path = path.replace("HELP_ROLE", str(held["id"]))
    before = _state(db)
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = make_client(app).open(f"/api/v1{path}", method=method, json=body, headers=headers)
    want = expected[KINDS.index(kind)]
    assert response.status_code == want, response.get_data(as_text=True)
    after = _state(db)
    (declared,) = [e for e in spec.ENDPOINTS if e.name == name]
    if want >= 400:
        assert response.mimetype == "application/problem+json"
        assert after == before  # a refused call changes nothing
    elif declared.writes:
        assert after != before
        token_id = db.execute("SELECT max(id) AS id FROM portal_api_tokens").fetchone()["id"]
        audited = db.execute("SELECT actor, token_id FROM portal_audit_log WHERE action NOT LIKE 'api_token.%'"
                             " ORDER BY id DESC LIMIT 1").fetchone()
        assert audited == {"actor": HOLDERS[kind], "token_id": token_id}
    else:
        assert after == before
