"""Creating mailboxes from the admin pages: real IMAP with the new password, limits under concurrency."""

from __future__ import annotations

import re
import threading

import pytest
from imapclient.exceptions import LoginError

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 4"
NEW_PASSWORD = "quartz meadow lantern 2026 river"
URL = "/admin/domains/team.example/mailboxes/new"


@pytest.fixture
def admin(app, db):
    make_mailbox(db, "boss@team.example", PASSWORD)
    make_mailbox(db, "someone@other.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@team.example", "team.example"])
    client = make_client(app)
    assert sign_in(client, "boss@team.example", PASSWORD).status_code == 302
    return client


def create(client, url=URL, **fields):
    data = {"csrf_token": csrf_token(client, url), "local_part": "anna", "password": NEW_PASSWORD,
            "confirm_password": NEW_PASSWORD, "quota": ""}
    data.update(fields)
    return client.post(url, data=data)


def mailbox_rows(db) -> list[str]:
    return [r["email"] for r in db.execute("SELECT email FROM virtual_users ORDER BY email").fetchall()]


def test_created_mailbox_signs_in_over_imap(admin, db, mail_stack):
    response = create(admin, local_part="Anna", quota="50 MB", final="y")  # the owner chose it: mail may use it
    assert response.status_code == 200
    assert "anna@team.example</strong> can now receive mail" in response.get_data(as_text=True)
    assert response.headers["Cache-Control"] == "no-store"
    imap_login(mail_stack.imap_port, "anna@team.example", NEW_PASSWORD, client_ip=new_client_ip()).logout()
    row = db.execute("SELECT quota_bytes, password FROM virtual_users WHERE email = 'anna@team.example'").fetchone()
    assert row["quota_bytes"] == 50 * 1024**2 and row["password"].startswith("{SHA512-CRYPT}$6$")
    entry = db.execute("SELECT actor, actor_role, action, target, summary FROM portal_audit_log"
                       " WHERE action = 'mailbox.create'").fetchone()
    assert (entry["actor"], entry["actor_role"], entry["action"], entry["target"]) == (
        "boss@team.example", "domain_admin", "mailbox.create", "anna@team.example")
    assert NEW_PASSWORD not in repr(entry) and "$6$" not in repr(entry)


def test_generated_password_is_shown_once_and_works(admin, db, mail_stack):
    response = create(admin, local_part="gen", password="", confirm_password="", generate="y", final="y")
    assert response.status_code == 200
    generated = re.search(r"<code>([^<]+)</code>", response.get_data(as_text=True)).group(1)
    imap_login(mail_stack.imap_port, "gen@team.example", generated, client_ip=new_client_ip()).logout()
    # Not stored anywhere the browser keeps: no flash, no redirect.
    assert generated not in repr(admin.get_cookie("portal_session").value)
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "gen@team.example", "not it", client_ip=new_client_ip())


@pytest.mark.parametrize(
    ("fields", "status", "message"),
    [
        ({"local_part": "boss"}, 409, "boss@team.example already exists."),
        ({"local_part": "sales"}, 409, "sales@team.example is already an alias"),
        ({"local_part": "two words"}, 400, "Use letters, digits"),
        ({"local_part": "x@other.example"}, 400, "Use letters, digits"),
        ({"local_part": ""}, 400, "Enter the part before the @."),
        ({"password": "", "confirm_password": ""}, 400, "Enter a password, or let the portal generate one."),
        ({"confirm_password": "different"}, 400, "The two passwords are not the same."),
        ({"password": "password1234", "confirm_password": "password1234"}, 400, "too easy to guess"),
        ({"quota": "lots"}, 400, "Write a size such as 500 MB"),
        ({"quota": "2 TB"}, 409, "The most this domain allows per mailbox is 1 GB."),
    ],
)
def test_refusals_are_explained_and_write_nothing(admin, db, fields, status, message):
    db.execute("UPDATE virtual_domains SET max_quota_bytes = 1024 * 1024 * 1024 WHERE name = 'team.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination)"
               " SELECT id, 'sales@team.example', 'boss@team.example' FROM virtual_domains WHERE name = 'team.example'")
    before = mailbox_rows(db)
    response = create(admin, **fields)
    assert response.status_code == status
    assert message in response.get_data(as_text=True)
    assert mailbox_rows(db) == before
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'mailbox.create'").fetchone()["n"] == 0


def test_twenty_creates_at_once_respect_the_limit(app_factory, db):
    make_mailbox(db, "boss@team.example", PASSWORD)
    db.execute("UPDATE virtual_domains SET max_mailboxes = 6")  # boss is one of them
    app = app_factory(DB_POOL_MAX_SIZE=25)
    app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@team.example", "team.example"])
    client = make_client(app)
    sign_in(client, "boss@team.example", PASSWORD)
    tokens = [csrf_token(client, URL) for _ in range(20)]
    statuses = []

    def one(n, token):
        statuses.append(client.post(URL, data={"csrf_token": token, "local_part": f"user{n}", "generate": "y",
                                               "quota": ""}).status_code)

    threads = [threading.Thread(target=one, args=(n, t)) for n, t in enumerate(tokens)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [200] * 5 + [409] * 15
    assert len(mailbox_rows(db)) == 6
    assert db.execute("SELECT mailbox_count FROM virtual_domains").fetchone()["mailbox_count"] == 6


def test_other_domains_and_users_cannot_create(app, admin, db):
    other = "/admin/domains/other.example/mailboxes/new"
    assert admin.get(other).status_code == 404
    assert admin.post(other, data={"csrf_token": csrf_token(admin, URL), "local_part": "x", "generate": "y"}
                      ).status_code == 404
    user = make_client(app)
    sign_in(user, "someone@other.example", PASSWORD)
    assert user.get(URL).status_code == 403
    assert "x@other.example" not in mailbox_rows(db)


# --- editing ----------------------------------------------------------------------------------------------


def edit(client, address, **fields):
    url = f"/admin/domains/team.example/mailboxes/{address}"
    data = {"csrf_token": csrf_token(client, url), "quota": "", "active": "y"}
    data.update(fields)
    return client.post(url, data=data)


def test_edit_limit_disable_and_password(app, admin, db, mail_stack):
    make_mailbox(db, "worker@team.example", PASSWORD)
    worker = make_client(app)
    assert sign_in(worker, "worker@team.example", PASSWORD).status_code == 302

    assert edit(admin, "worker@team.example", quota="200 MB").status_code == 302
    assert db.execute("SELECT quota_bytes FROM virtual_users WHERE email = 'worker@team.example'"
                      ).fetchone()["quota_bytes"] == 200 * 1024**2
    assert worker.get("/").status_code == 200  # a new limit does not sign anyone out

    assert edit(admin, "worker@team.example", quota="200 MB", new_password=NEW_PASSWORD,
                confirm_password=NEW_PASSWORD, final="y").status_code == 302
    imap_login(mail_stack.imap_port, "worker@team.example", NEW_PASSWORD, client_ip=new_client_ip()).logout()
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "worker@team.example", PASSWORD, client_ip=new_client_ip())
    assert worker.get("/").status_code == 302  # sessions ended

    response = edit(admin, "worker@team.example", quota="200 MB", active="")
    assert response.status_code == 302
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "worker@team.example", NEW_PASSWORD, client_ip=new_client_ip())
    actions = [r["summary"] for r in db.execute(
        "SELECT summary FROM portal_audit_log WHERE action = 'mailbox.update' ORDER BY id").fetchall()]
    assert actions[0] == {"quota_bytes": {"before": 0, "after": 200 * 1024**2}}
    assert actions[1]["password_changed"] is True and actions[1]["sessions_ended"] == 1
    assert actions[2]["active"] == {"before": True, "after": False}
    assert NEW_PASSWORD not in repr(actions)


@pytest.mark.parametrize(
    ("fields", "message"),
    [({"quota": "lots"}, "Write a size"), ({"quota": "5 GB"}, "The most this domain allows"),
     ({"new_password": "short", "confirm_password": "short"}, "Use at least 12 characters."),
     ({"new_password": NEW_PASSWORD, "confirm_password": "other"}, "The two passwords are not the same.")],
)
def test_edit_refusals_change_nothing(admin, db, fields, message):
    make_mailbox(db, "worker@team.example", PASSWORD)
    db.execute("UPDATE virtual_domains SET max_quota_bytes = 1024 * 1024 * 1024")
    before = db.execute("SELECT quota_bytes, password, active FROM virtual_users WHERE email = 'worker@team.example'"
                        ).fetchone()
    response = edit(admin, "worker@team.example", **fields)
    assert response.status_code in (400, 409)
    assert message in response.get_data(as_text=True)
    after = db.execute("SELECT quota_bytes, password, active FROM virtual_users WHERE email = 'worker@team.example'"
                       ).fetchone()
    assert after == before


def test_domain_admin_cannot_edit_another_admin_or_another_domain(app, admin, db):
    make_mailbox(db, "root@team.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@team.example"])
    assert admin.get("/admin/domains/team.example/mailboxes/root@team.example").status_code == 403
    assert edit(admin, "boss@team.example").status_code == 302  # their own mailbox is fine
    assert admin.get("/admin/domains/team.example/mailboxes/someone@other.example").status_code == 404
    assert admin.get("/admin/domains/other.example/mailboxes/someone@other.example").status_code == 404
    assert admin.get("/admin/domains/team.example/mailboxes/nobody@team.example").status_code == 404


# --- deleting and purging --------------------------------------------------------------------------------


def delete(client, address, confirm=None):
    url = f"/admin/domains/team.example/mailboxes/{address}/delete"
    return client.post(url, data={"csrf_token": csrf_token(client, url), "confirm": confirm or address})


def test_delete_keeps_mail_refuses_reuse_until_purged(app, admin, db, mail_stack):
    from tests.mail import send_mail
    from tests.mail import wait_for_maildir_message

    make_mailbox(db, "leaver@team.example", PASSWORD)
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'only@team.example',"
               " 'leaver@team.example' FROM virtual_domains WHERE name = 'team.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, s, d FROM virtual_domains,"
               " (VALUES ('both@team.example', 'leaver@team.example'), ('both@team.example', 'boss@team.example'))"
               " v(s, d) WHERE name = 'team.example'")
    send_mail(mail_stack.smtp_port, "leaver@team.example", "old mail")
    maildir = mail_stack.mail_root / "team.example" / "leaver"
    wait_for_maildir_message(maildir, "old mail")

    page = admin.get("/admin/domains/team.example/mailboxes/leaver@team.example/delete").get_data(as_text=True)
    assert "only@team.example (its only destination" in page and "both@team.example" in page
    assert delete(admin, "leaver@team.example", confirm="wrong@team.example").status_code == 400
    assert "leaver@team.example" in mailbox_rows(db)

    response = delete(admin, "leaver@team.example")
    assert response.status_code == 302
    flashed = admin.get(response.headers["Location"]).get_data(as_text=True)
    assert "These aliases delivered only to it and are gone: only@team.example." in flashed
    assert "leaver@team.example" not in mailbox_rows(db)
    assert maildir.is_dir()  # mail kept
    aliases = [(r["source"], r["destination"]) for r in db.execute(
        "SELECT source, destination FROM virtual_aliases ORDER BY 1, 2").fetchall()]
    assert aliases == [("both@team.example", "boss@team.example")]
    with pytest.raises(Exception, match="550"):
        send_mail(mail_stack.smtp_port, "leaver@team.example", "after delete")

    response = create(admin, local_part="leaver")
    assert response.status_code == 409
    assert "its mail is kept until" in response.get_data(as_text=True)
    assert app.test_cli_runner().invoke(args=["mailbox", "purge"]).output.strip() == "nothing to purge"

    result = app.test_cli_runner().invoke(args=["mailbox", "purge", "--address", "leaver@team.example"])
    assert result.exit_code == 0, result.output
    assert not maildir.exists()
    assert create(admin, local_part="leaver").status_code == 200
    actions = [r["action"] for r in db.execute("SELECT action FROM portal_audit_log ORDER BY id").fetchall()]
    assert actions[-3:] == ["mailbox.delete", "mailbox.purge", "mailbox.create"]


def test_purge_after_the_grace_period_and_never_outside_the_mail_root(app, admin, db, mail_stack, tmp_path):
    make_mailbox(db, "old@team.example", PASSWORD)
    delete(admin, "old@team.example")
    db.execute("UPDATE portal_mailbox_removals SET purge_after = now() - interval '1 day'")
    (mail_stack.mail_root / "team.example" / "old" / "cur").mkdir(parents=True)
    assert "purged old@team.example" in app.test_cli_runner().invoke(args=["mailbox", "purge"]).output
    assert not (mail_stack.mail_root / "team.example" / "old").exists()

    outside = tmp_path / "precious"
    outside.mkdir()
    db.execute("INSERT INTO portal_mailbox_removals (email, maildir, purge_after) VALUES ('x@team.example', %s,"
               " now() - interval '1 day')", (str(outside),))
    result = app.test_cli_runner().invoke(args=["mailbox", "purge"])
    assert result.exit_code != 0 and "not inside" in result.output
    assert outside.exists()


def test_a_mailbox_deleted_before_its_first_mail_is_released_when_named(app, admin, db, mail_stack):
    make_mailbox(db, "typo@team.example", PASSWORD)
    delete(admin, "typo@team.example")
    assert not (mail_stack.mail_root / "team.example" / "typo").exists()  # Dovecot makes it at the first delivery
    # The timer's purge leaves it pending (the mail may live elsewhere if mail_root is wrong)...
    db.execute("UPDATE portal_mailbox_removals SET purge_after = now() - interval '1 day'")
    timer = app.test_cli_runner().invoke(args=["mailbox", "purge"])
    assert timer.exit_code != 0 and "no folder" in timer.output
    assert create(admin, local_part="typo").status_code == 409
    # ...the operator, naming it, releases the address: nothing was there to keep.
    named = app.test_cli_runner().invoke(args=["mailbox", "purge", "--address", "typo@team.example"])
    assert named.exit_code == 0 and "released typo@team.example" in named.output
    row = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'mailbox.purge'").fetchone()
    assert row["summary"]["found"] is False
    assert create(admin, local_part="typo").status_code == 200
    assert "typo@team.example" in mailbox_rows(db)


def test_nobody_deletes_their_own_or_another_admins_mailbox(app, admin, db):
    make_mailbox(db, "root@team.example", PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@team.example"])
    assert delete(admin, "root@team.example").status_code == 403
    assert delete(admin, "boss@team.example").status_code == 403
    assert {"root@team.example", "boss@team.example"} <= set(mailbox_rows(db))


def test_display_name_on_create_edit_and_list(admin, db):
    assert create(admin, local_part="dora", display_name="Dora <Müller>").status_code == 200
    listing = admin.get("/admin/domains/team.example/mailboxes").get_data(as_text=True)
    assert "<td>Dora &lt;Müller&gt;</td>" in listing
    assert edit(admin, "dora@team.example", display_name="Dora M.").status_code == 302
    assert db.execute("SELECT display_name FROM virtual_users WHERE email = 'dora@team.example'"
                      ).fetchone()["display_name"] == "Dora M."
    summary = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'mailbox.update'").fetchone()["summary"]
    assert summary == {"display_name": {"before": "Dora <Müller>", "after": "Dora M."}}
