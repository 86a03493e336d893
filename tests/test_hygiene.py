"""Mail-flow and data hygiene: tagged loops, latent loops, one text rule, forged cursors, sessions, HTTP details.

Each test reproduces one finding of the abuse-resistance issue against the real stack.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message
from tests.test_mail_safety import postmap

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORD = "hygiene test password 77"


@pytest.fixture
def loops(app, db):
    for name in ("loop1", "loop2", "loop3", "carol", "bob", "boss"):
        make_mailbox(db, f"{name}@l.example", PASSWORD)
    assert app.test_cli_runner().invoke(args=["admin", "grant", "domain-admin", "boss@l.example", "l.example"]
                                        ).exit_code == 0
    return app


def forward(app, who: str, destinations: str, keep_copy: bool = False):
    client = make_client(app)
    assert sign_in(client, f"{who}@l.example", PASSWORD).status_code == 302
    data = {"csrf_token": csrf_token(client, "/account/forwarding"), "destinations": destinations}
    if keep_copy:
        data["keep_copy"] = "y"
    return client.post("/account/forwarding", data=data)


def alias_rows(db) -> list:
    return db.execute("SELECT source, destination FROM virtual_aliases ORDER BY 1, 2").fetchall()


# 1. A tagged address cannot close a circle that Postfix would expand for ever.

@pytest.mark.parametrize("keep_copy", [False, True])
def test_forwarding_to_ones_own_tagged_address_is_refused(loops, db, mail_stack, keep_copy):
    response = forward(loops, "loop1", "loop1+x@l.example", keep_copy)
    assert response.status_code == 400
    assert "Your own address is not a forwarding destination" in response.get_data(as_text=True)
    assert alias_rows(db) == []
    # And so a message to loop1, carol and bob together still arrives for all three.
    send_mail(mail_stack.smtp_port, "loop1@l.example, carol@l.example, bob@l.example", "all three")
    for who in ("loop1", "carol", "bob"):
        wait_for_maildir_message(mail_stack.mail_root / "l.example" / who, "all three")


def test_two_users_cannot_close_a_circle_through_a_tag(loops, db, mail_stack):
    assert forward(loops, "loop2", "loop3+a@l.example").status_code == 302
    response = forward(loops, "loop3", "loop2@l.example")
    assert response.status_code == 400
    assert "round in a circle (loop3@l.example \u2192 loop2@l.example \u2192 loop3+a@l.example)" in \
        response.get_data(as_text=True)
    assert [tuple(r.values()) for r in alias_rows(db)] == [("loop2@l.example", "loop3+a@l.example")]
    assert postmap(mail_stack, "loop3@l.example") == "loop3@l.example"


def test_an_admin_alias_and_the_import_follow_the_delimiter_too(loops, db, tmp_path):
    boss = make_client(loops)
    assert sign_in(boss, "boss@l.example", PASSWORD).status_code == 302
    assert forward(loops, "loop1", "team+x@l.example").status_code == 302
    response = boss.post("/admin/domains/l.example/aliases/new", data={
        "csrf_token": csrf_token(boss, "/admin/domains/l.example/aliases"), "local_part": "team",
        "destinations": "loop1@l.example"})
    assert response.status_code == 409 and "round in a circle" in response.get_data(as_text=True)
    csv = tmp_path / "aliases.csv"
    csv.write_text("source,destination\nteam@l.example,loop1@l.example\n")
    result = loops.test_cli_runner().invoke(args=["import", "aliases", str(csv)])
    assert result.exit_code != 0 and "round in a circle" in result.output
    assert [tuple(r.values()) for r in alias_rows(db)] == [("loop1@l.example", "team+x@l.example")]


# 2. A disabled mailbox's rows count in the loop check, and enabling checks again.

def test_a_disabled_mailbox_cannot_hide_a_circle(loops, db):
    assert forward(loops, "loop3", "loop2@l.example").status_code == 302
    runner = loops.test_cli_runner()
    assert runner.invoke(args=["mailbox", "disable", "loop3@l.example", "--reason", "test"]).exit_code == 0
    response = forward(loops, "loop2", "loop3@l.example")
    assert response.status_code == 400 and "round in a circle" in response.get_data(as_text=True)


def test_enabling_refuses_a_circle_made_behind_the_portals_back(loops, db, mail_stack):
    runner = loops.test_cli_runner()
    assert runner.invoke(args=["mailbox", "disable", "loop3@l.example", "--reason", "test"]).exit_code == 0
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id, email, %s"
               " FROM virtual_users WHERE email = %s", ("loop3@l.example", "loop2@l.example"))
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT domain_id, email, %s"
               " FROM virtual_users WHERE email = %s", ("loop2@l.example", "loop3@l.example"))
    result = runner.invoke(args=["mailbox", "enable", "loop3@l.example"])
    assert result.exit_code != 0 and "would send mail round in a circle" in result.output
    assert db.execute("SELECT active FROM virtual_users WHERE email = 'loop3@l.example'").fetchone()["active"] is False
    assert runner.invoke(args=["domain", "disable", "l.example"]).exit_code == 0
    result = runner.invoke(args=["domain", "enable", "l.example"])
    assert result.exit_code != 0 and "would send mail round in a circle" in result.output


# 5. One rule for free text: what a page accepts, the export writes and the import reads back.

@pytest.mark.parametrize("name", ["evil\x1b[31mred", "two\r\nlines", "tab\there", "nul\x00byte", "bidi\u202eevil",
                                  "line\u2028separator"])
def test_names_with_control_characters_are_refused_on_the_pages(loops, db, name):
    boss = make_client(loops)
    assert sign_in(boss, "boss@l.example", PASSWORD).status_code == 302
    url = "/admin/domains/l.example/mailboxes/carol@l.example"
    version = db.execute("SELECT updated_at FROM virtual_users WHERE email = 'carol@l.example'").fetchone()
    response = boss.post(url, data={"csrf_token": csrf_token(boss, url), "version": version["updated_at"].isoformat(),
                                    "display_name": name, "quota": "", "active": "y"})
    assert response.status_code == 400
    assert "without control characters" in response.get_data(as_text=True)
    assert db.execute("SELECT display_name FROM virtual_users WHERE email = 'carol@l.example'"
                      ).fetchone()["display_name"] == ""


def test_what_the_pages_accept_survives_export_and_import(loops, db, tmp_path):
    boss = make_client(loops)
    assert sign_in(boss, "boss@l.example", PASSWORD).status_code == 302
    url = "/admin/domains/l.example/mailboxes/carol@l.example"
    version = db.execute("SELECT updated_at FROM virtual_users WHERE email = 'carol@l.example'").fetchone()
    name = "김철수 \"Carol\", O'Neil =1+1 \U0001f600"
    response = boss.post(url, data={"csrf_token": csrf_token(boss, url), "version": version["updated_at"].isoformat(),
                                    "display_name": name, "quota": "", "active": "y"})
    assert response.status_code == 302
    runner = loops.test_cli_runner()
    exported = tmp_path / "m.csv"
    assert runner.invoke(args=["export", "mailboxes", "-o", str(exported)]).exit_code == 0
    db.execute("DELETE FROM virtual_users WHERE email = 'carol@l.example'")
    db.execute("DELETE FROM portal_mailbox_removals")
    only_carol = tmp_path / "carol.csv"
    lines = exported.read_text().splitlines()
    only_carol.write_text("\n".join([lines[0], *[line for line in lines if line.startswith("carol@")]]) + "\n")
    result = runner.invoke(args=["import", "mailboxes", str(only_carol)])
    assert result.exit_code == 0, result.output
    assert db.execute("SELECT display_name FROM virtual_users WHERE email = 'carol@l.example'"
                      ).fetchone()["display_name"] == name


# 6. A forged date in a paging cursor is a bad request, not an error.

@pytest.mark.parametrize("path", ["/admin/audit", "/admin/audit.csv", "/admin/domains/l.example/mailboxes",
                                  "/admin/domains", "/admin/roles"])
def test_a_cursor_before_the_first_moment_is_refused(loops, db, path):
    make_mailbox(db, "root@hq.example", PASSWORD)
    assert loops.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@hq.example"]).exit_code == 0
    root = make_client(loops)
    assert sign_in(root, "root@hq.example", PASSWORD).status_code == 302
    sort = {"/admin/domains": "newest", "/admin/roles": "newest", "/admin/domains/l.example/mailboxes": "newest"}
    response = root.get(path, query_string={"after": '["0001-01-01T00:00:00+01:00",1]',
                                            **({"sort": sort[path]} if path in sort else {})})
    assert response.status_code == 400


# 7. Disabling a domain ends its users' portal sessions.

def test_disabling_a_domain_ends_its_sessions(loops, db):
    carol = make_client(loops)
    assert sign_in(carol, "carol@l.example", PASSWORD).status_code == 302
    runner = loops.test_cli_runner()
    assert runner.invoke(args=["domain", "disable", "l.example"]).exit_code == 0
    assert runner.invoke(args=["domain", "enable", "l.example"]).exit_code == 0
    assert carol.get("/").status_code == 302  # back to the sign-in page: the old cookie is worthless


# 9. Smaller: the Host header, the Allow header, short idle timeouts.

def test_a_trailing_slash_redirect_never_names_the_host_header(loops, db):
    boss = make_client(loops)
    assert sign_in(boss, "boss@l.example", PASSWORD).status_code == 302
    response = boss.get("/admin", headers={"Host": "evil.example"})
    assert response.status_code == 308
    assert response.headers["Location"] == "/admin/"


def test_a_405_says_which_methods_are_allowed(loops):
    response = make_client(loops).put("/auth/login")
    assert response.status_code == 405
    assert set(response.headers["Allow"].replace(" ", "").split(",")) >= {"GET", "POST"}


def test_an_active_session_outlives_a_short_idle_timeout(app_factory, db):
    make_mailbox(db, "quick@l.example", PASSWORD)
    app = app_factory(SESSION_IDLE_TIMEOUT=4)
    client = make_client(app)
    assert sign_in(client, "quick@l.example", PASSWORD).status_code == 302
    for _ in range(4):  # a request every 2.5 s, 10 s in all: more than twice the idle timeout
        time.sleep(2.5)
        assert client.get("/").status_code == 200
    time.sleep(4.5)
    assert client.get("/").status_code == 302  # idle past the timeout: signed out
