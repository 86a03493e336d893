"""Roles from the command line: grant, revoke, list, with audit rows and clear refusals."""

from __future__ import annotations

import pytest

from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 3"


@pytest.fixture
def people(db):
    return {a: make_mailbox(db, a, PASSWORD) for a in ("root@a.example", "ann@a.example", "ben@b.example")}


def cli(app, *args):
    return app.test_cli_runner().invoke(args=["admin", *args])


def roles(db) -> list[tuple]:
    return [
        (r["email"], r["role"], r["domain"])
        for r in db.execute(
            "SELECT u.email, r.role, d.name AS domain FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
            " LEFT JOIN virtual_domains d ON d.id = r.domain_id ORDER BY 1, 2, 3"
        ).fetchall()
    ]


def test_grant_list_and_revoke(app, people, db):
    assert "no roles granted yet" in cli(app, "list").output
    result = cli(app, "grant", "superadmin", "Root@A.example")
    assert result.exit_code == 0 and "root@a.example is now superadmin" in result.output
    assert cli(app, "grant", "domain-admin", "ann@a.example", "A.EXAMPLE").exit_code == 0
    assert cli(app, "grant", "helpdesk", "ben@b.example").exit_code == 0
    assert roles(db) == [
        ("ann@a.example", "domain_admin", "a.example"),
        ("ben@b.example", "helpdesk", None),
        ("root@a.example", "superadmin", None),
    ]
    listing = cli(app, "list").output
    assert "ann@a.example\tdomain-admin\ta.example" in listing and "ben@b.example\thelpdesk\t*" in listing

    again = cli(app, "grant", "superadmin", "root@a.example")
    assert again.exit_code == 0 and "was already superadmin" in again.output
    assert cli(app, "revoke", "domain-admin", "ann@a.example", "a.example").exit_code == 0
    assert ("ann@a.example", "domain_admin", "a.example") not in roles(db)
    actions = [r["action"] for r in db.execute("SELECT action FROM portal_audit_log ORDER BY id").fetchall()]
    assert actions == ["role.grant", "role.grant", "role.grant", "role.revoke"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("grant", "superadmin", "nobody@a.example"), "There is no mailbox nobody@a.example"),
        (("grant", "superadmin", "not an address"), "is not an e-mail address"),
        (("grant", "superadmin", "root@a.example", "a.example"), "A superadmin holds every domain"),
        (("grant", "domain-admin", "ann@a.example"), "A domain admin needs a domain"),
        (("grant", "domain-admin", "ann@a.example", "zzz.example"), "There is no domain zzz.example"),
        (("grant", "emperor", "ann@a.example"), "Invalid value"),
        (("revoke", "superadmin", "ann@a.example"), "ann@a.example is not superadmin"),
    ],
)
def test_refusals_are_explained_and_change_nothing(app, people, db, args, message):
    result = cli(app, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert roles(db) == []
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"] == 0


def test_the_last_superadmin_cannot_be_revoked(app, people, db):
    cli(app, "grant", "superadmin", "root@a.example")
    result = cli(app, "revoke", "superadmin", "root@a.example")
    assert result.exit_code != 0 and "root@a.example is the last superadmin who can sign in" in result.output
    assert roles(db) == [("root@a.example", "superadmin", None)]
    cli(app, "grant", "superadmin", "ann@a.example")
    assert cli(app, "revoke", "superadmin", "root@a.example").exit_code == 0
    assert roles(db) == [("ann@a.example", "superadmin", None)]


def test_deleting_a_mailbox_drops_its_roles(app, people, db):
    cli(app, "grant", "superadmin", "root@a.example")
    db.execute("DELETE FROM virtual_users WHERE email = 'root@a.example'")
    assert roles(db) == []


def test_admin_page_shows_the_domains_in_scope(app, people, db):
    cli(app, "grant", "domain-admin", "ann@a.example", "a.example")
    client = make_client(app)
    sign_in(client, "ann@a.example", PASSWORD)
    page = client.get("/admin/").get_data(as_text=True)
    assert "domain admin of a.example" in page
    assert ">a.example</a></td>" in page and "b.example" not in page.split("Domains")[1]
    assert 'href="/admin/"' in client.get("/").get_data(as_text=True)

    cli(app, "grant", "superadmin", "root@a.example")
    root = make_client(app)
    sign_in(root, "root@a.example", PASSWORD)
    page = root.get("/admin/").get_data(as_text=True)
    assert ">a.example</a></td>" in page and ">b.example</a></td>" in page
