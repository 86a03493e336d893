"""Roles on the admin pages: superadmins grant and revoke, with audit rows; refusals change nothing."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 11"


@pytest.fixture
def root(app, db):
    for address in ("root@r.example", "ann@r.example", "ben@s.example"):
        make_mailbox(db, address, PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@r.example"])
    client = make_client(app)
    assert sign_in(client, "root@r.example", PASSWORD).status_code == 302
    return client


def held(db) -> list[tuple]:
    return [(r["email"], r["role"], r["domain"]) for r in db.execute(
        "SELECT u.email, r.role, d.name AS domain FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
        " LEFT JOIN virtual_domains d ON d.id = r.domain_id ORDER BY 1, 2, 3").fetchall()]


def audit_rows(db) -> list[tuple]:
    return [(r["actor"], r["actor_role"], r["action"], r["target"], r["domain"], r["summary"]) for r in db.execute(
        "SELECT * FROM portal_audit_log WHERE actor <> 'cli' ORDER BY id").fetchall()]


def grant(client, **fields):
    return client.post("/admin/roles", data={"csrf_token": csrf_token(client, "/admin/roles"), **fields})


def test_grant_gives_access_at_once_and_revoke_takes_it_away(app, root, db):
    ann = make_client(app)
    sign_in(ann, "ann@r.example", PASSWORD)
    assert ann.get("/admin/").status_code == 403
    response = grant(root, address=" Ann@R.example ", role="domain-admin", domain="S.EXAMPLE")
    assert response.status_code == 302
    assert "ann@r.example is now domain admin of s.example." in root.get("/admin/roles").get_data(as_text=True)
    assert ("ann@r.example", "domain_admin", "s.example") in held(db)
    assert ann.get("/admin/domains/s.example/mailboxes").status_code == 200
    assert ann.get("/admin/domains/r.example/mailboxes").status_code == 404
    assert audit_rows(db) == [("root@r.example", "superadmin", "role.grant", "ann@r.example", "s.example",
                               {"role": "domain_admin", "in": "s.example"})]

    role_id = db.execute("SELECT id FROM portal_roles WHERE role = 'domain_admin'").fetchone()["id"]
    token = csrf_token(root, "/admin/roles")
    assert root.post(f"/admin/roles/{role_id}/revoke", data={"csrf_token": token}).status_code == 302
    assert "ann@r.example is no longer domain admin of s.example." in root.get("/admin/roles").get_data(as_text=True)
    assert ann.get("/admin/").status_code == 403
    assert [r[2] for r in audit_rows(db)] == ["role.grant", "role.revoke"]


def test_granting_twice_says_so_and_writes_nothing_more(root, db):
    grant(root, address="ben@s.example", role="helpdesk", domain="")
    response = grant(root, address="ben@s.example", role="helpdesk", domain="")
    assert response.status_code == 302
    assert "ben@s.example was already helpdesk." in root.get("/admin/roles").get_data(as_text=True)
    assert [r[2] for r in audit_rows(db)] == ["role.grant"]


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"address": "nobody@r.example", "role": "helpdesk"}, "There is no mailbox nobody@r.example"),
        ({"address": "ann@r.example", "role": "domain-admin"}, "A domain admin needs a domain."),
        ({"address": "ann@r.example", "role": "domain-admin", "domain": "none.example"},
         "There is no domain none.example."),
        ({"address": "ann@r.example", "role": "superadmin", "domain": "r.example"}, "A superadmin holds every domain"),
        ({"address": "ann@r.example", "role": "emperor"}, "Not a valid choice"),
        ({"address": "", "role": "helpdesk"}, "Enter the mailbox&#39;s address."),
        ({"address": "ann@r.example\n", "role": "helpdesk"}, "contains control characters"),
        ({"address": "ann@r.example", "role": "helpdesk", "domain": "r.example/../x"}, "is not a valid domain name"),
    ],
)
def test_bad_grants_are_explained_and_change_nothing(root, db, fields, message):
    before = held(db)
    response = grant(root, **fields)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert held(db) == before and audit_rows(db) == []


def test_the_last_superadmin_keeps_the_role(root, db):
    role_id = db.execute("SELECT id FROM portal_roles WHERE role = 'superadmin'").fetchone()["id"]
    token = csrf_token(root, "/admin/roles")
    response = root.post(f"/admin/roles/{role_id}/revoke", data={"csrf_token": token}, follow_redirects=True)
    page = response.get_data(as_text=True)
    assert "root@r.example is the last superadmin who can sign in; make someone else superadmin first." in page
    assert held(db) == [("root@r.example", "superadmin", None)] and audit_rows(db) == []


def test_revoking_a_missing_role_is_404(root):
    token = csrf_token(root, "/admin/roles")
    assert root.post("/admin/roles/999999/revoke", data={"csrf_token": token}).status_code == 404


def test_role_list_searches_and_sorts(root, db):
    grant(root, address="ann@r.example", role="helpdesk", domain="s.example")
    grant(root, address="ben@s.example", role="domain-admin", domain="s.example")
    html = root.get("/admin/roles?q=be&mode=prefix").get_data(as_text=True)
    assert "ben@s.example" in html and "<td>ann@r.example</td>" not in html
    html = root.get("/admin/roles?sort=role").get_data(as_text=True)
    assert html.index("<td>ben@s.example</td>") < html.index("<td>ann@r.example</td>") < html.index(
        "<td>root@r.example</td>")


def test_a_disabled_superadmin_does_not_count(app, root, db):
    grant(root, address="ann@r.example", role="superadmin", domain="")
    token = csrf_token(root, "/helpdesk/mailboxes/ann@r.example")
    assert root.post("/helpdesk/mailboxes/ann@r.example/disable",
                     data={"csrf_token": token, "reason": "test"}).status_code == 302
    # ann is disabled: root is the last superadmin who can sign in and keeps the role.
    role_id = db.execute("SELECT r.id FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
                         " WHERE u.email = 'root@r.example'").fetchone()["id"]
    token = csrf_token(root, "/admin/roles")
    page = root.post(f"/admin/roles/{role_id}/revoke", data={"csrf_token": token},
                     follow_redirects=True).get_data(as_text=True)
    assert "root@r.example is the last superadmin who can sign in" in page
    assert ("root@r.example", "superadmin", None) in held(db)


def test_the_last_usable_superadmin_cannot_be_disabled_or_deleted(app, root, db):
    other = make_client(app)
    grant(root, address="ann@r.example", role="superadmin", domain="")
    assert sign_in(other, "ann@r.example", PASSWORD).status_code == 302
    token = csrf_token(other, "/helpdesk/mailboxes/root@r.example")
    assert other.post("/helpdesk/mailboxes/root@r.example/disable",
                      data={"csrf_token": token, "reason": "test"}).status_code == 302
    # Now ann is the only usable superadmin; root's mailbox is disabled, so root cannot act.
    result = app.test_cli_runner().invoke(args=["mailbox", "disable", "ann@r.example", "--reason", "x"])
    assert result.exit_code != 0 and "ann@r.example is the last superadmin who can sign in" in result.output
    result = app.test_cli_runner().invoke(args=["mailbox", "delete", "ann@r.example", "--yes"])
    assert result.exit_code != 0 and "last superadmin" in result.output
    assert db.execute("SELECT active FROM virtual_users WHERE email = 'ann@r.example'").fetchone()["active"]


def test_a_mailbox_with_a_one_time_password_gets_no_role(root, db):
    db.execute("UPDATE virtual_users SET password_must_change = true WHERE email = 'ann@r.example'")
    response = grant(root, address="ann@r.example", role="helpdesk", domain="")
    assert response.status_code == 400
    assert "has a one-time password" in response.get_data(as_text=True)
    assert ("ann@r.example", "helpdesk", None) not in held(db)
