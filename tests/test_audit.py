"""The audit log: one row per change, in the change's transaction, never a secret; its pages, filters and CSV."""

from __future__ import annotations

import ast
import csv
import io
import re
from pathlib import Path

import pytest

import portal
from portal import auditlog
from portal.queries import audit
from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 13"
USER = "user@a.example"
NEW = "copper meadow lantern 77 orbit"


@pytest.fixture
def people(app, db):
    for address in (USER, "root@a.example", "dadmin@a.example", "badmin@b.example", "gone@a.example"):
        make_mailbox(db, address, PASSWORD)
    runner = app.test_cli_runner()
    for args in (("superadmin", "root@a.example"), ("domain-admin", "dadmin@a.example", "a.example"),
                 ("domain-admin", "badmin@b.example", "b.example")):
        assert runner.invoke(args=["admin", "grant", *args]).exit_code == 0
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination)"
               " SELECT id, 'team@a.example', 'user@a.example' FROM virtual_domains WHERE name = 'a.example'")
    # Something for the enable, unlock and personal-alias-delete actions to act on.
    db.execute("UPDATE virtual_users SET active = false, disabled_reason = 'test' WHERE email = 'gone@a.example'")
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination, owner_id)"
               " SELECT domain_id, 'mine@a.example', email, id FROM virtual_users WHERE email = %s", (USER,))
    db.execute("DELETE FROM portal_audit_log")
    clients = {}
    for name, address in (("user", USER), ("root", "root@a.example"), ("dadmin", "dadmin@a.example"),
                          ("badmin", "badmin@b.example")):
        clients[name] = make_client(app)
        assert sign_in(clients[name], address, PASSWORD).status_code == 302
    # After the sign-ins, which clear it: failures for the unlock action to forget.
    db.execute("INSERT INTO portal_login_throttle (kind, key, failures, window_started_at)"
               " VALUES ('account', %s, 3, now())", (USER,))
    return clients


def form_post(client, page: str, url: str | None = None, **data):
    return client.post(url or page, data={"csrf_token": csrf_token(client, page), **data})


def domain_admin_role_id(db) -> int:
    return db.execute("SELECT r.id FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
                      " WHERE u.email = 'badmin@b.example'").fetchone()["id"]


def personal_alias_id(db) -> int:
    return db.execute("SELECT id FROM virtual_aliases WHERE owner_id IS NOT NULL").fetchone()["id"]


# name -> (what to do, the action and target of the one row it must write)
ACTIONS = {
    "password change": (lambda c, db: form_post(c["user"], "/account/password", current_password=PASSWORD,
                                                new_password=NEW, confirm_password=NEW),
                        "password.change", USER),
    "forwarding": (lambda c, db: form_post(c["user"], "/account/forwarding", destinations="far@remote.example",
                                           keep_copy="y"), "forwarding.update", USER),
    "personal alias": (lambda c, db: form_post(c["user"], "/account/forwarding", "/account/aliases",
                                               local_part="nick"), "alias.personal.add", "nick@a.example"),
    "mailbox create": (lambda c, db: form_post(c["dadmin"], "/admin/domains/a.example/mailboxes/new",
                                               local_part="fresh", generate="y", quota=""),
                       "mailbox.create", "fresh@a.example"),
    "mailbox update": (lambda c, db: form_post(c["dadmin"], f"/admin/domains/a.example/mailboxes/{USER}",
                                               display_name="User", quota="1 GB", active="y"),
                       "mailbox.update", USER),
    "mailbox delete": (lambda c, db: form_post(c["dadmin"], "/admin/domains/a.example/mailboxes/gone@a.example/delete",
                                               confirm="gone@a.example"), "mailbox.delete", "gone@a.example"),
    "alias create": (lambda c, db: form_post(c["dadmin"], "/admin/domains/a.example/aliases/new",
                                             local_part="sales", destinations=USER), "alias.create", "sales@a.example"),
    "alias update": (lambda c, db: form_post(c["dadmin"], "/admin/domains/a.example/aliases/team@a.example",
                                             destinations="root@a.example"), "alias.update", "team@a.example"),
    "alias delete": (lambda c, db: form_post(c["dadmin"], "/admin/domains/a.example/aliases",
                                             "/admin/domains/a.example/aliases/team@a.example/delete"),
                     "alias.delete", "team@a.example"),
    "domain create": (lambda c, db: form_post(c["root"], "/admin/domains/new", name="new.example", active="y",
                                              max_mailboxes="0", max_aliases="0", max_personal_aliases="5"),
                      "domain.create", "new.example"),
    "domain update": (lambda c, db: form_post(c["root"], "/admin/domains/b.example/settings", active="y",
                                              max_mailboxes="10", max_aliases="0", max_personal_aliases="5"),
                      "domain.update", "b.example"),
    "domain delete": (lambda c, db: form_post(c["root"], "/admin/domains/b.example/delete", confirm="b.example"),
                      "domain.delete", "b.example"),
    "role grant": (lambda c, db: form_post(c["root"], "/admin/roles", address=USER, role="helpdesk", domain=""),
                   "role.grant", USER),
    "password reset": (lambda c, db: form_post(c["dadmin"], f"/helpdesk/mailboxes/{USER}",
                                               f"/helpdesk/mailboxes/{USER}/reset"), "mailbox.password_reset", USER),
    "disable": (lambda c, db: form_post(c["dadmin"], f"/helpdesk/mailboxes/{USER}",
                                        f"/helpdesk/mailboxes/{USER}/disable", reason="on leave"),
                "mailbox.disable", USER),
    "enable": (lambda c, db: form_post(c["dadmin"], "/helpdesk/mailboxes/gone@a.example",
                                       "/helpdesk/mailboxes/gone@a.example/enable", reason=""),
               "mailbox.enable", "gone@a.example"),
    "unlock": (lambda c, db: form_post(c["dadmin"], f"/helpdesk/mailboxes/{USER}",
                                       f"/helpdesk/mailboxes/{USER}/unlock"), "mailbox.unlock", USER),
    "personal alias delete": (lambda c, db: form_post(c["user"], "/account/forwarding",
                                                      f"/account/aliases/{personal_alias_id(db)}/delete"),
                              "alias.personal.delete", "mine@a.example"),
    "role revoke": (lambda c, db: form_post(c["root"], "/admin/roles",
                                            f"/admin/roles/{domain_admin_role_id(db)}/revoke"),
                    "role.revoke", "badmin@b.example"),
}


def snapshot(db) -> dict:
    """Everything an action could change (sessions by identity only: reading a page may touch last_seen_at)."""
    tables = {
        "domains": "SELECT * FROM virtual_domains ORDER BY id",
        "users": "SELECT * FROM virtual_users ORDER BY id",
        "aliases": "SELECT * FROM virtual_aliases ORDER BY id",
        "roles": "SELECT * FROM portal_roles ORDER BY id",
        "sessions": "SELECT token_hash, user_id FROM portal_sessions ORDER BY token_hash",
        "removals": "SELECT * FROM portal_mailbox_removals ORDER BY id",
        "quota": "SELECT * FROM portal_mailbox_quota ORDER BY mailbox_id",
        "throttle": "SELECT kind, key, failures, locked_until FROM portal_login_throttle WHERE kind = 'account'"
                    " ORDER BY key",
        "audit": "SELECT * FROM portal_audit_log ORDER BY id",
    }
    return {name: db.execute(query).fetchall() for name, query in tables.items()}


@pytest.mark.parametrize("name", list(ACTIONS))
def test_each_action_writes_exactly_one_matching_row(people, db, name):
    do, action, target = ACTIONS[name]
    response = do(people, db)
    assert response.status_code in (200, 302), response.get_data(as_text=True)[:2000]
    rows = db.execute("SELECT * FROM portal_audit_log").fetchall()
    assert [(r["action"], r["target"]) for r in rows] == [(action, target)]
    row = rows[0]
    assert row["actor"] and row["actor_role"] in ("user", "domain_admin", "superadmin", "helpdesk")
    assert str(row["client_addr"]).startswith("198.")
    text = str(dict(row))
    assert PASSWORD not in text and NEW not in text and "$6$" not in text and "{SHA512" not in text


@pytest.mark.parametrize("name", list(ACTIONS))
def test_a_database_error_inside_an_action_leaves_no_change_and_no_row(people, db, monkeypatch, name):
    do, _, _ = ACTIONS[name]
    before = snapshot(db)

    def failing_record(conn, **fields):
        conn.execute("SELECT 1 / 0")  # the audit write fails inside the action's transaction

    monkeypatch.setattr(audit, "record", failing_record)
    response = do(people, db)
    assert response.status_code == 500
    assert "Traceback" not in response.get_data(as_text=True)
    after = snapshot(db)
    if name == "password change":
        # Dovecot accepted the current password before the change began: like any
        # successful sign-in, that clears the failures counted for the address.
        before.pop("throttle"), after.pop("throttle")
    assert after == before


def test_cli_changes_are_audited_as_cli(app, people, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["mailbox", "set-quota", USER, "2 GB"]).exit_code == 0
    assert runner.invoke(args=["admin", "grant", "helpdesk", USER, "a.example"]).exit_code == 0
    assert runner.invoke(args=["admin", "revoke", "helpdesk", USER, "a.example"]).exit_code == 0
    rows = db.execute("SELECT actor, actor_role, client_addr, action, target FROM portal_audit_log ORDER BY id"
                      ).fetchall()
    assert [tuple(r.values()) for r in rows] == [
        ("cli", "cli", None, "mailbox.update", USER), ("cli", "cli", None, "role.grant", USER),
        ("cli", "cli", None, "role.revoke", USER),
    ]


def test_a_refused_change_writes_no_row(people, db):
    response = form_post(people["dadmin"], "/admin/domains/a.example/aliases/new", local_part="user",
                         destinations="root@a.example")  # user@a.example is a mailbox: refused
    assert response.status_code == 409
    response = form_post(people["user"], "/account/password", current_password="wrong password 1",
                         new_password=NEW, confirm_password=NEW)
    assert response.status_code == 400
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"] == 0


def entries(html: str) -> list[tuple[str, str]]:
    """(what, concerning) of each row of the audit table."""
    body = html.split("<tbody>", 1)[1] if "<tbody>" in html else ""
    cells = re.findall(r"<tr>\s*<td><time[^>]*>[^<]*</time></td>\s*<td>.*?</td>\s*<td>([^<]*)</td>\s*<td>([^<]*)</td>",
                       body, re.S)
    return cells


@pytest.fixture
def history(people, db):
    """Changes in both domains: a mailbox update in a, a domain update in b, a password change by the user."""
    ACTIONS["mailbox update"][0](people, db)
    ACTIONS["domain update"][0](people, db)
    ACTIONS["forwarding"][0](people, db)
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log").fetchone()["n"] == 3


def test_superadmin_sees_everything_domain_admins_their_domains(people, history):
    assert entries(people["root"].get("/admin/audit").get_data(as_text=True)) == [
        ("forwarding changed", USER), ("domain settings changed", "b.example"), ("mailbox changed", USER)]
    assert entries(people["dadmin"].get("/admin/audit").get_data(as_text=True)) == [
        ("forwarding changed", USER), ("mailbox changed", USER)]
    assert entries(people["badmin"].get("/admin/audit").get_data(as_text=True)) == [
        ("domain settings changed", "b.example")]
    assert people["user"].get("/admin/audit").status_code == 403
    assert people["user"].get("/admin/audit.csv").status_code == 403


def test_filters(people, history):
    root = people["root"]
    assert entries(root.get("/admin/audit?actor=ROOT@a.example").get_data(as_text=True)) == [
        ("domain settings changed", "b.example")]
    assert entries(root.get(f"/admin/audit?target={USER}&action=mailbox.update").get_data(as_text=True)) == [
        ("mailbox changed", USER)]
    assert entries(root.get("/admin/audit?since=2000-01-01&until=2000-12-31").get_data(as_text=True)) == []
    assert len(entries(root.get("/admin/audit?since=2000-01-01&sort=oldest").get_data(as_text=True))) == 3


@pytest.mark.parametrize(("query", "message"), [
    ("since=yesterday", "Not a valid date value"), ("action=drop.table", "Not a valid choice"),
    ("since=2026-02-02&until=2026-02-01", "The end of the range is before its start."),
    ("actor=a%0Ab", "control characters"), ("until=9999-12-31", "before the year 9999"),
    ("since=9999-12-31", "before the year 9999"),
])
def test_bad_filters_are_explained(people, history, query, message):
    response = people["root"].get("/admin/audit?" + query)
    assert response.status_code == 400 and message in response.get_data(as_text=True)
    assert people["root"].get("/admin/audit.csv?" + query).status_code == 400


def test_pages_follow_the_cursor(people, db):
    # The domain has been there a day: a domain admin reads its history from its creation on.
    db.execute("UPDATE virtual_domains SET created_at = now() - interval '1 day'")
    db.execute("INSERT INTO portal_audit_log (at, actor, actor_role, action, target, domain)"
               " SELECT now() - n * interval '1 second' * (n % 3), 'cli', 'cli', 'mailbox.quota',"
               " 'u' || n || '@a.example', 'a.example' FROM generate_series(1, 120) n")
    seen, url = [], "/admin/audit?action=mailbox.quota"
    while url:
        html = people["dadmin"].get(url).get_data(as_text=True)
        seen += [target for _, target in entries(html)]
        match = re.search(r'<a href="([^"]+)">Next', html)
        url = match.group(1).replace("&amp;", "&") if match else None
    assert sorted(seen) == sorted(f"u{n}@a.example" for n in range(1, 121)) and len(seen) == 120
    assert people["dadmin"].get("/admin/audit?after=%5B1%5D").status_code == 400


def test_csv_export(people, db, history):
    db.execute("INSERT INTO portal_audit_log (actor, actor_role, action, target, domain, summary)"
               " VALUES ('cli', 'cli', 'mailbox.quota', '=HYPERLINK(\"x\")@a.example', 'a.example', '{}')")
    db.execute("INSERT INTO portal_audit_log (actor, actor_role, action, target, domain)"
               " SELECT 'cli', 'cli', 'mailbox.quota', 'bulk' || n || '@a.example', 'a.example'"
               " FROM generate_series(1, 2500) n")
    response = people["dadmin"].get("/admin/audit.csv")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    assert response.headers["Content-Disposition"].startswith('attachment; filename="audit-')
    rows = list(csv.DictReader(io.StringIO(response.get_data(as_text=True))))
    assert len(rows) == 2500 + 1 + 2  # all of domain a's rows, across several batches; none of b's
    assert {r["domain"] for r in rows} == {"a.example"}
    assert "'=HYPERLINK(\"x\")@a.example" in {r["target"] for r in rows}
    only = list(csv.DictReader(io.StringIO(people["dadmin"].get(
        "/admin/audit.csv?action=mailbox.update").get_data(as_text=True))))
    assert [(r["action"], r["target"], r["actor"]) for r in only] == [("mailbox.update", USER, "dadmin@a.example")]


def test_dashboard_history(people, db):
    ACTIONS["forwarding"][0](people, db)
    ACTIONS["mailbox update"][0](people, db)
    html = people["user"].get("/").get_data(as_text=True)
    assert "forwarding changed" in html and "mailbox changed" in html
    assert "an administrator" in html and "dadmin@a.example" not in html
    assert "far@remote.example" in html



def test_an_address_used_again_does_not_inherit_history(app, people, db):
    ACTIONS["forwarding"][0](people, db)
    ACTIONS["mailbox update"][0](people, db)
    # The mailbox is deleted, purged, and the address given to someone new.
    db.execute("DELETE FROM virtual_aliases WHERE source = %s OR destination = %s", (USER, USER))
    db.execute("DELETE FROM virtual_users WHERE email = %s", (USER,))
    make_mailbox(db, USER, PASSWORD)
    newcomer = make_client(app)
    assert sign_in(newcomer, USER, PASSWORD).status_code == 302
    html = newcomer.get("/").get_data(as_text=True)
    assert "No changes recorded yet." in html and "far@remote.example" not in html
    html = people["root"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "No changes recorded." in html


def test_helpdesk_history_stays_in_the_mailboxs_domain(app, people, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["admin", "grant", "helpdesk", USER, "b.example"]).exit_code == 0
    assert runner.invoke(args=["admin", "revoke", "helpdesk", USER, "b.example"]).exit_code == 0
    ACTIONS["forwarding"][0](people, db)
    html = people["dadmin"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "forwarding changed" in html and "role given" not in html
    html = people["root"].get(f"/helpdesk/mailboxes/{USER}").get_data(as_text=True)
    assert "role given" in html


def _written_actions() -> set[str]:
    """Every audit action the portal's code writes: the ``action`` of audit.record and of the rows built for it,
    and the action arguments of the rules' own audit helpers (both branches of a conditional)."""
    found: set[str] = set()

    def strings(node) -> list[str]:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return [node.value]
        if isinstance(node, ast.IfExp):
            return strings(node.body) + strings(node.orelse)
        return []

    for path in Path(portal.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                found.update(s for k in node.keywords if k.arg == "action" for s in strings(k.value))
                name = getattr(node.func, "id", getattr(node.func, "attr", ""))
                if name == "_audit" and len(node.args) > 3:
                    found.update(strings(node.args[3]))
                if name == "_record" and len(node.args) > 1:
                    found.update(strings(node.args[1]))
            if isinstance(node, ast.Dict):
                found.update(s for k, v in zip(node.keys, node.values, strict=True)
                             if isinstance(k, ast.Constant) and k.value == "action" for s in strings(v))
    return {action for action in found if "." in action}


def test_every_action_written_has_a_name_people_read():
    written = _written_actions()
    assert {"mailbox.create", "vacation.update", "second_factor.add", "role.grant"} <= written  # the scan works
    assert sorted(written - set(auditlog.ACTIONS)) == []
