"""Superadmins create domains and set their limits; domain admins only see them."""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 6"


@pytest.fixture
def root(app, db):
    make_mailbox(db, "root@hq.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@hq.example"])
    client = make_client(app)
    assert sign_in(client, "root@hq.example", PASSWORD).status_code == 302
    return client


def post_domain(client, url="/admin/domains/new", **fields):
    data = {"csrf_token": csrf_token(client, "/admin/domains"), "name": "new.example", "active": "y",
            "max_mailboxes": "3", "max_aliases": "0", "default_quota": "1 GB", "max_quota": "5 GB",
            "allow_personal_aliases": "y", "max_personal_aliases": "2"}
    data.update(fields)
    return client.post(url, data=data)


def domain_row(db, name="new.example"):
    return db.execute("SELECT * FROM virtual_domains WHERE name = %s", (name,)).fetchone()


def test_create_a_domain_then_use_its_limits(root, db, mail_stack):
    response = post_domain(root, name=" New.EXAMPLE. ")
    assert response.status_code == 302
    row = domain_row(db)
    assert (row["max_mailboxes"], row["default_quota_bytes"], row["max_quota_bytes"], row["max_personal_aliases"]) == (
        3, 1024**3, 5 * 1024**3, 2)
    # Postfix now accepts the domain.
    import subprocess

    answer = subprocess.run(["postmap", "-q", "new.example", f"pgsql:{mail_stack.postfix_dir / 'pgsql-domains.cf'}"],
                            capture_output=True, text=True).stdout.strip()
    assert answer == "1"
    entry = db.execute("SELECT action, target, summary FROM portal_audit_log WHERE action = 'domain.create'").fetchone()
    assert entry["target"] == "new.example" and entry["summary"]["max_mailboxes"] == 3


def test_idn_domains_are_stored_in_ascii(root, db):
    assert post_domain(root, name="Bücher.example").status_code == 302
    assert domain_row(db, "xn--bcher-kva.example") is not None


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"name": "hq.example"}, 409, "hq.example already exists."),
        ({"name": "HQ.Example"}, 409, "hq.example already exists."),
        ({"name": "not a domain"}, 400, "This domain name is not a valid domain name."),
        ({"name": ""}, 400, "This domain name is empty."),
        ({"max_mailboxes": "-1"}, 400, "Use a number from 0 up."),
        ({"max_mailboxes": "many"}, 400, "Not a valid integer value."),
        ({"default_quota": "lots"}, 400, "Write a size such as 500 MB"),
        ({"default_quota": "10 GB", "max_quota": "5 GB"}, 400, "cannot be above the largest one"),
    ],
)
def test_bad_domains_are_refused(root, db, fields, status, message):
    before = db.execute("SELECT count(*) AS n FROM virtual_domains").fetchone()["n"]
    response = post_domain(root, **fields)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert db.execute("SELECT count(*) AS n FROM virtual_domains").fetchone()["n"] == before


def test_edit_settings_and_disable(root, db, mail_stack):
    post_domain(root)
    response = post_domain(root, url="/admin/domains/new.example/settings", active="", max_mailboxes="10")
    assert response.status_code == 302
    row = domain_row(db)
    assert row["active"] is False and row["max_mailboxes"] == 10
    import subprocess

    answer = subprocess.run(["postmap", "-q", "new.example", f"pgsql:{mail_stack.postfix_dir / 'pgsql-domains.cf'}"],
                            capture_output=True, text=True).stdout.strip()
    assert answer == ""  # a disabled domain is no longer local to Postfix


def test_domain_admin_sees_settings_but_cannot_change_or_create(app, root, db):
    post_domain(root)
    make_mailbox(db, "boss@new.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@new.example", "new.example"])
    boss = make_client(app)
    sign_in(boss, "boss@new.example", PASSWORD)
    page = boss.get("/admin/domains/new.example/settings").get_data(as_text=True)
    assert "Only a superadmin changes a domain's limits." in page and "<fieldset disabled" in page
    assert post_domain(boss, url="/admin/domains/new.example/settings", max_mailboxes="999").status_code == 403
    assert domain_row(db)["max_mailboxes"] == 3
    assert post_domain(boss, name="mine.example").status_code == 403
    assert domain_row(db, "mine.example") is None


def delete_domain(client, name, confirm=None):
    url = f"/admin/domains/{name}/delete"
    return client.post(url, data={"csrf_token": csrf_token(client, "/admin/domains"), "confirm": confirm or name})


def test_delete_a_domain_keeps_its_mail_and_its_addresses(app, root, db, mail_stack):
    from tests.mail import send_mail
    from tests.mail import wait_for_maildir_message

    post_domain(root)
    make_mailbox(db, "staff@new.example", PASSWORD)
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'fwd@hq.example',"
               " 'staff@new.example' FROM virtual_domains WHERE name = 'hq.example'")
    send_mail(mail_stack.smtp_port, "staff@new.example", "kept mail")
    maildir = mail_stack.mail_root / "new.example" / "staff"
    wait_for_maildir_message(maildir, "kept mail")

    page = root.get("/admin/domains/new.example/delete").get_data(as_text=True)
    assert "1 mailbox:" in page
    assert delete_domain(root, "new.example", confirm="other.example").status_code == 400
    assert domain_row(db) is not None

    response = delete_domain(root, "new.example")
    assert response.status_code == 302
    assert domain_row(db) is None
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 0
    assert maildir.is_dir()
    entry = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'domain.delete'").fetchone()
    assert entry["summary"] == {"mailboxes": 1, "alias_rows": 0, "alias_rows_elsewhere": ["fwd@hq.example"]}

    # The domain may come back, but not its old addresses until their mail is purged.
    assert post_domain(root).status_code == 302
    response = root.post("/admin/domains/new.example/mailboxes/new", data={
        "csrf_token": csrf_token(root, "/admin/domains"), "local_part": "staff", "generate": "y"})
    assert response.status_code == 409 and "its mail is kept until" in response.get_data(as_text=True)
    app.test_cli_runner().invoke(args=["mailbox", "purge", "--address", "staff@new.example"])
    assert not maildir.exists()


def test_only_superadmins_delete_and_not_their_own_domain(app, root, db):
    post_domain(root)
    make_mailbox(db, "boss@new.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@new.example", "new.example"])
    boss = make_client(app)
    sign_in(boss, "boss@new.example", PASSWORD)
    assert delete_domain(boss, "new.example").status_code == 403
    assert delete_domain(root, "hq.example").status_code == 403
    assert domain_row(db) is not None and domain_row(db, "hq.example") is not None
