"""Admins manage aliases with the same rules as self-service, proven with postmap and real mail."""

from __future__ import annotations

import subprocess

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 2"
NEW = "/admin/domains/crew.example/aliases/new"


@pytest.fixture
def admin(app, db):
    for address in ("boss@crew.example", "ann@crew.example", "bob@crew.example", "eve@other.example"):
        make_mailbox(db, address, PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@crew.example", "crew.example"])
    client = make_client(app)
    assert sign_in(client, "boss@crew.example", PASSWORD).status_code == 302
    return client


def save(client, url=NEW, **fields):
    data = {"csrf_token": csrf_token(client, "/admin/domains/crew.example/aliases"), "local_part": "sales",
            "destinations": "ann@crew.example\nbob@crew.example"}
    data.update(fields)
    return client.post(url, data=data)


def postmap(mail_stack, key):
    return subprocess.run(["postmap", "-q", key, f"pgsql:{mail_stack.postfix_dir / 'pgsql-aliases.cf'}"],
                          capture_output=True, text=True).stdout.strip()


def rows(db):
    return [(r["source"], r["destination"]) for r in db.execute(
        "SELECT source, destination FROM virtual_aliases ORDER BY 1, 2").fetchall()]


def test_alias_with_two_destinations_delivers_to_both(admin, db, mail_stack):
    assert save(admin).status_code == 302
    assert postmap(mail_stack, "sales@crew.example") == "ann@crew.example,bob@crew.example"
    send_mail(mail_stack.smtp_port, "sales@crew.example", "to sales")
    for who in ("ann", "bob"):
        wait_for_maildir_message(mail_stack.mail_root / "crew.example" / who, "to sales")
    entry = db.execute("SELECT actor, action, target, summary FROM portal_audit_log WHERE action = 'alias.create'"
                       ).fetchone()
    assert entry["target"] == "sales@crew.example" and entry["summary"]["after"] == ["ann@crew.example",
                                                                                     "bob@crew.example"]


def test_catch_all_takes_unknown_addresses_only(app, admin, db, mail_stack):
    # A catch-all also takes the reserved addresses (postmaster@, abuse@...): a superadmin's to set.
    response = save(admin, local_part="", catch_all="y", destinations="boss@crew.example")
    assert response.status_code == 403 and "Only a superadmin can set the catch-all" in response.get_data(as_text=True)
    make_mailbox(db, "root@hq.example", PASSWORD)
    assert app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@hq.example"]).exit_code == 0
    admin = make_client(app)
    assert sign_in(admin, "root@hq.example", PASSWORD).status_code == 302
    assert save(admin, local_part="", catch_all="y", destinations="boss@crew.example").status_code == 302
    assert postmap(mail_stack, "@crew.example") == "boss@crew.example"
    assert postmap(mail_stack, "ann@crew.example") == "ann@crew.example"
    assert save(admin, local_part="", catch_all="y", destinations="ann@crew.example").status_code == 409


def test_edit_and_delete(admin, db, mail_stack):
    save(admin)
    url = "/admin/domains/crew.example/aliases/sales@crew.example"
    assert "ann@crew.example\nbob@crew.example" in admin.get(url).get_data(as_text=True)
    assert save(admin, url=url, destinations="bob@crew.example").status_code == 302
    assert postmap(mail_stack, "sales@crew.example") == "bob@crew.example"
    response = admin.post(url + "/delete", data={"csrf_token": csrf_token(admin, url)})
    assert response.status_code == 302
    assert rows(db) == []
    actions = [r["action"] for r in db.execute(
        "SELECT action FROM portal_audit_log WHERE action LIKE 'alias.%' ORDER BY id").fetchall()]
    assert actions == ["alias.create", "alias.update", "alias.delete"]


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"local_part": "ann"}, 409, "ann@crew.example is already in use."),
        ({"local_part": "postmaster"}, 403, "postmaster@crew.example is reserved"),
        ({"local_part": "x+y"}, 409, "may not contain +"),
        ({"local_part": "two words"}, 400, "Use letters, digits"),
        ({"destinations": ""}, 409, "Give at least one address to deliver to."),
        ({"destinations": "sales@crew.example"}, 409, "An alias cannot deliver to itself."),
        ({"destinations": "not an address"}, 400, "Line 1:"),
    ],
)
def test_refusals_write_nothing(admin, db, fields, status, message):
    response = save(admin, **fields)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert rows(db) == []


def test_loops_and_limits(admin, db):
    assert save(admin, local_part="a", destinations="b@crew.example").status_code == 302
    response = save(admin, local_part="b", destinations="a@crew.example")
    assert response.status_code == 409 and "round in a circle" in response.get_data(as_text=True)
    db.execute("UPDATE virtual_domains SET max_aliases = 1 WHERE name = 'crew.example'")
    response = save(admin, local_part="c", destinations="ann@crew.example")
    assert response.status_code == 409 and "limit of 1 aliases" in response.get_data(as_text=True)


def test_superadmin_may_use_reserved_names(app, admin, db):
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "ann@crew.example"])
    root = make_client(app)
    sign_in(root, "ann@crew.example", PASSWORD)
    assert save(root, local_part="postmaster", destinations="boss@crew.example").status_code == 302


def test_other_domains_and_mailbox_forwarding_are_out_of_reach(admin, db):
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'x@other.example',"
               " 'eve@other.example' FROM virtual_domains WHERE name = 'other.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'ann@crew.example',"
               " 'eve@other.example' FROM virtual_domains WHERE name = 'crew.example'")
    before = rows(db)
    assert admin.get("/admin/domains/crew.example/aliases/x@other.example").status_code == 404
    assert admin.get("/admin/domains/other.example/aliases/x@other.example").status_code == 404
    assert admin.get("/admin/domains/crew.example/aliases/ann@crew.example").status_code == 404
    listing = admin.get("/admin/domains/crew.example/aliases").get_data(as_text=True)
    assert "forwarding of the mailbox" in listing
    token = csrf_token(admin, "/admin/domains/crew.example/aliases")
    for url in ("/admin/domains/crew.example/aliases/x@other.example/delete",
                "/admin/domains/crew.example/aliases/ann@crew.example/delete"):
        assert admin.post(url, data={"csrf_token": token}).status_code == 404
    assert rows(db) == before


def test_deleting_an_alias_asks_first(app, db):
    from tests.conftest import make_client
    from tests.conftest import sign_in
    from tests.mail import make_mailbox

    make_mailbox(db, "boss@confirm.example", "a long enough test password 20")
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "boss@confirm.example"])
    assert app.test_cli_runner().invoke(args=["alias", "add", "team@confirm.example", "boss@confirm.example"]
                                        ).exit_code == 0
    client = make_client(app)
    sign_in(client, "boss@confirm.example", "a long enough test password 20")
    page = client.get("/admin/domains/confirm.example/aliases/team@confirm.example/delete")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and "Delete team@confirm.example?" in html
    assert "<li>boss@confirm.example</li>" in html
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 1  # looking changes nothing
    assert client.get("/admin/domains/confirm.example/aliases/none@confirm.example/delete").status_code == 404
