"""The provisioning API against the real stack: tokens made on the page, the same rules as the pages,
problem+json errors in the request's language, and proof through IMAP and SMTP."""

from __future__ import annotations

import re
from datetime import UTC
from datetime import datetime
from datetime import timedelta

import pytest
from imapclient.exceptions import LoginError
from jsonschema import Draft202012Validator

from portal.access import Actor
from portal.api import spec
from portal.rules import api_tokens as token_rules
from tests.conftest import csrf_token
from tests.conftest import grant_and_sign_in
from tests.conftest import make_client
from tests.conftest import new_client_ip
from tests.conftest import sign_in
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

pytestmark = pytest.mark.mail_server

PASSWORD = "a long enough test password 5"
NEW_PASSWORD = "another long password for the api 7"
PEOPLE = {"root": "root@a.example", "admin": "admin@a.example", "admin_b": "admin@b.example",
          "help": "help@a.example", "user": "user@a.example"}


@pytest.fixture
def people(app, db):
    for address in (*PEOPLE.values(), "other@a.example", "bob@b.example"):
        make_mailbox(db, address, PASSWORD)
    return grant_and_sign_in(app, [("superadmin", PEOPLE["root"]), ("domain-admin", PEOPLE["admin"], "a.example"),
                                   ("domain-admin", PEOPLE["admin_b"], "b.example"),
                                   ("helpdesk", PEOPLE["help"], "a.example")], PEOPLE, PASSWORD)


def make_token(app, db, who: str, *, domains=None, read_only=False, expires_at=None) -> str:
    """A token of ``who`` (a key of PEOPLE), made through the rule the page calls."""
    row = db.execute("SELECT id FROM virtual_users WHERE email = %s", (PEOPLE[who],)).fetchone()
    with app.app_context():
        from portal.db import get_db

        return token_rules.create_token(get_db(), Actor(PEOPLE[who], "192.0.2.1", row["id"]), name=f"{who} sync",
                                        domains=domains, read_only=read_only, expires_at=expires_at)


def api(app, token: str | None, method: str, path: str, json=None, **headers):
    client = make_client(app)
    if token:
        headers["Authorization"] = f"Bearer {token}"
    return client.open(f"/api/v1{path}", method=method, json=json, headers=headers)


def assert_matches_schema(response, method: str, path_template: str) -> None:
    (declared,) = [e for e in spec.ENDPOINTS if e.method == method and e.path == path_template]
    assert response.status_code == declared.status, response.get_data(as_text=True)
    if declared.response:
        errors = list(Draft202012Validator(declared.response).iter_errors(response.get_json()))
        assert errors == []


def test_a_token_made_on_the_page_is_shown_once_and_works(app, people, db):
    admin = people["admin"]
    response = admin.post("/account/api-tokens", data={"csrf_token": csrf_token(admin, "/account/api-tokens"),
                                                       "name": "student records", "domains": "a.example\n"})
    assert response.status_code == 201
    token = re.search(r'<code class="secret" id="new-token">([^<]+)</code>', response.get_data(as_text=True)).group(1)
    assert token.startswith("mpt_")
    listing = admin.get("/account/api-tokens").get_data(as_text=True)
    assert "student records" in listing and token not in listing and "never" in listing
    # Only its hash is kept, and the audit row names the token, not its secret.
    stored = db.execute("SELECT * FROM portal_api_tokens").fetchone()
    assert token.split("_", 2)[2].encode() not in bytes(stored["secret_sha256"])
    (made,) = db.execute("SELECT * FROM portal_audit_log WHERE action = 'api_token.create'").fetchall()
    assert token not in str(dict(made)) and made["summary"]["domains"] == ["a.example"]

    me = api(app, token, "GET", "/me", REMOTE_ADDR="198.51.100.7")
    assert_matches_schema(me, "GET", "/me")
    assert me.get_json() == {"address": PEOPLE["admin"], "read_only": False, "domains": ["a.example"],
                             "superadmin": False}
    used = db.execute("SELECT last_used_at, last_used_addr FROM portal_api_tokens").fetchone()
    assert used["last_used_at"] is not None
    listing = admin.get("/account/api-tokens").get_data(as_text=True)
    assert "never" not in listing


def test_people_without_a_role_have_no_tokens(people):
    user = people["user"]
    assert user.get("/account/api-tokens").status_code == 403
    assert "API tokens" not in user.get("/").get_data(as_text=True)


def test_a_token_cannot_reach_past_its_holders_domains(app, people, db):
    with pytest.raises(token_rules.TokenRefused, match="no role in b.example"):
        make_token(app, db, "admin", domains=["b.example"])
    with pytest.raises(token_rules.TokenRefused):
        make_token(app, db, "user")


def test_session_cookies_never_authenticate_the_api(app, people):
    for who in ("root", "admin"):
        response = people[who].get("/api/v1/domains")
        assert response.status_code == 401
        assert response.mimetype == "application/problem+json"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_token_never_authenticates_a_page(app, people, db):
    token = make_token(app, db, "root")
    client = make_client(app)
    for path in ("/", "/admin/", "/helpdesk/", "/account/api-tokens"):
        response = client.get(path, headers={"Authorization": f"Bearer {token}"})
        assert response.status_code == 302 and response.headers["Location"].startswith("/auth/login")


def test_mailbox_created_through_the_api_signs_in_after_the_one_time_password_is_changed(app, people, db, mail_stack):
    token = make_token(app, db, "admin")
    response = api(app, token, "POST", "/domains/a.example/mailboxes",
                   {"local_part": "Student.One", "display_name": "Student One", "quota": "1G"})
    assert_matches_schema(response, "POST", "/domains/{domain}/mailboxes")
    created = response.get_json()
    assert created["address"] == "student.one@a.example"
    one_time = created["password"]
    # A one-time password: mail clients are refused until its holder chose their own on the portal.
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, created["address"], one_time, client_ip=new_client_ip())
    student = make_client(app)
    assert sign_in(student, created["address"], one_time).headers["Location"] == "/account/password"
    response = student.post("/account/password", data={
        "csrf_token": csrf_token(student, "/account/password"), "current_password": one_time,
        "new_password": NEW_PASSWORD, "confirm_password": NEW_PASSWORD})
    assert response.status_code == 302
    imap_login(mail_stack.imap_port, created["address"], NEW_PASSWORD, client_ip=new_client_ip()).logout()

    fetched = api(app, token, "GET", "/mailboxes/student.one@a.example")
    assert_matches_schema(fetched, "GET", "/mailboxes/{address}")
    assert fetched.get_json()["quota_bytes"] == 1 << 30 and fetched.get_json()["display_name"] == "Student One"
    (row,) = db.execute("SELECT actor, actor_role, token_id, summary FROM portal_audit_log"
                        " WHERE action = 'mailbox.create'").fetchall()
    token_id = db.execute("SELECT id FROM portal_api_tokens").fetchone()["id"]
    assert (row["actor"], row["actor_role"], row["token_id"]) == (PEOPLE["admin"], "domain_admin", token_id)
    assert one_time not in str(dict(row))
    assert f"(API token {token_id})" in people["admin"].get("/admin/audit").get_data(as_text=True)


def test_alias_created_through_the_api_routes_mail_through_postfix(app, people, db, mail_stack):
    token = make_token(app, db, "admin")
    response = api(app, token, "POST", "/domains/a.example/aliases",
                   {"address": "team@a.example", "destinations": ["other@a.example", "user@a.example"]})
    assert_matches_schema(response, "POST", "/domains/{domain}/aliases")
    assert response.get_json() == {"address": "team@a.example", "destinations": ["other@a.example", "user@a.example"],
                                   "personal": False}
    send_mail(mail_stack.smtp_port, "team@a.example", "through the api alias")
    for local in ("other", "user"):
        wait_for_maildir_message(mail_stack.mail_root / "a.example" / local, "through the api alias")

    listed = api(app, token, "GET", "/domains/a.example/aliases")
    assert_matches_schema(listed, "GET", "/domains/{domain}/aliases")
    assert [a["address"] for a in listed.get_json()["items"]] == ["team@a.example"]
    replaced = api(app, token, "PUT", "/domains/a.example/aliases/team@a.example", {"destinations": ["user@a.example"]})
    assert_matches_schema(replaced, "PUT", "/domains/{domain}/aliases/{address}")
    assert replaced.get_json()["destinations"] == ["user@a.example"]
    assert api(app, token, "DELETE", "/domains/a.example/aliases/team@a.example").status_code == 204
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 0


def test_a_domain_scoped_token_is_refused_on_another_domain_for_every_verb(app, people, db):
    token = make_token(app, db, "root", domains=["a.example"])
    before = db.execute("SELECT email, active, quota_bytes, password FROM virtual_users ORDER BY id").fetchall()
    calls = [
        ("GET", "/domains/b.example", None),
        ("GET", "/domains/b.example/mailboxes", None),
        ("POST", "/domains/b.example/mailboxes", {"local_part": "new"}),
        ("GET", "/mailboxes/bob@b.example", None),
        ("PATCH", "/mailboxes/bob@b.example", {"active": False}),
        ("DELETE", "/mailboxes/bob@b.example", None),
        ("POST", "/mailboxes/bob@b.example/password-reset", None),
        ("GET", "/domains/b.example/aliases", None),
        ("POST", "/domains/b.example/aliases", {"address": "x@b.example", "destinations": ["bob@b.example"]}),
        ("PUT", "/domains/b.example/aliases/x@b.example", {"destinations": ["bob@b.example"]}),
        ("DELETE", "/domains/b.example/aliases/x@b.example", None),
    ]
    for method, path, body in calls:
        response = api(app, token, method, path, body)
        assert response.status_code == 404, (method, path, response.get_json())
    domains = api(app, token, "GET", "/domains").get_json()["items"]
    assert [d["name"] for d in domains] == ["a.example"]
    after = db.execute("SELECT email, active, quota_bytes, password FROM virtual_users ORDER BY id").fetchall()
    assert after == before
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 0
    # Narrowed to a domain, a superadmin's token is that domain's admin: no reserved names, no new domains.
    response = api(app, token, "PATCH", "/mailboxes/other@a.example", {"quota": "2G"})
    assert response.status_code == 200
    row = db.execute("SELECT actor_role FROM portal_audit_log WHERE action = 'mailbox.update'").fetchone()
    assert row["actor_role"] == "domain_admin"


def test_revoked_and_expired_tokens_are_refused_at_once(app, people, db):
    token = make_token(app, db, "admin")
    assert api(app, token, "GET", "/domains").status_code == 200
    admin = people["admin"]
    token_id = db.execute("SELECT id FROM portal_api_tokens").fetchone()["id"]
    response = admin.post(f"/account/api-tokens/{token_id}/revoke",
                          data={"csrf_token": csrf_token(admin, "/account/api-tokens")})
    assert response.status_code == 302
    refused = api(app, token, "GET", "/domains")
    assert refused.status_code == 401 and refused.mimetype == "application/problem+json"
    assert db.execute("SELECT count(*) AS n FROM portal_audit_log WHERE action = 'api_token.revoke'"
                      ).fetchone()["n"] == 1

    expiring = make_token(app, db, "admin", expires_at=datetime.now(UTC) + timedelta(hours=1))
    assert api(app, expiring, "GET", "/domains").status_code == 200
    db.execute("UPDATE portal_api_tokens SET expires_at = now() - interval '1 second' WHERE revoked_at IS NULL")
    assert api(app, expiring, "GET", "/domains").status_code == 401
    # Someone else cannot revoke a token they do not hold.
    other = make_token(app, db, "root")
    other_id = db.execute("SELECT id FROM portal_api_tokens WHERE revoked_at IS NULL AND expires_at IS NULL"
                          ).fetchone()["id"]
    response = admin.post(f"/account/api-tokens/{other_id}/revoke",
                          data={"csrf_token": csrf_token(admin, "/account/api-tokens")})
    assert response.status_code == 404
    assert api(app, other, "GET", "/domains").status_code == 200


def test_a_disabled_holder_loses_the_token(app, people, db):
    token = make_token(app, db, "admin")
    db.execute("UPDATE virtual_users SET active = false WHERE email = %s", (PEOPLE["admin"],))
    assert api(app, token, "GET", "/domains").status_code == 401
    db.execute("UPDATE virtual_users SET active = true WHERE email = %s", (PEOPLE["admin"],))
    # A role taken away is gone from the token on its next call: it does at most what its holder may now.
    assert app.test_cli_runner().invoke(args=["admin", "revoke", "domain-admin", PEOPLE["admin"],
                                              "a.example"]).exit_code == 0
    assert api(app, token, "GET", "/domains").get_json()["items"] == []
    assert api(app, token, "GET", "/domains/a.example").status_code == 404


def test_a_read_only_token_reads_and_changes_nothing(app, people, db):
    token = make_token(app, db, "root", read_only=True)
    assert api(app, token, "GET", "/domains").status_code == 200
    assert api(app, token, "GET", "/mailboxes/user@a.example").status_code == 200
    for method, path, body in (("POST", "/domains/a.example/mailboxes", {"local_part": "x"}),
                               ("PATCH", "/mailboxes/user@a.example", {"active": False}),
                               ("DELETE", "/mailboxes/user@a.example", None),
                               ("POST", "/mailboxes/user@a.example/password-reset", None)):
        response = api(app, token, method, path, body)
        assert response.status_code == 403, (method, path)
    assert db.execute("SELECT bool_and(active) AS a, count(*) AS n FROM virtual_users").fetchone() == {"a": True,
                                                                                                       "n": 7}


def test_helpdesk_tokens_reset_passwords_and_nothing_more(app, people, db, mail_stack):
    token = make_token(app, db, "help")
    response = api(app, token, "POST", "/mailboxes/user@a.example/password-reset")
    assert_matches_schema(response, "POST", "/mailboxes/{address}/password-reset")
    with pytest.raises(LoginError):
        imap_login(mail_stack.imap_port, "user@a.example", PASSWORD, client_ip=new_client_ip())
    assert api(app, token, "PATCH", "/mailboxes/user@a.example", {"active": False}).status_code == 404
    assert api(app, token, "GET", "/domains").get_json()["items"] == []
    assert api(app, token, "POST", "/mailboxes/bob@b.example/password-reset").status_code == 404
    # Nor a role holder's password: helpdesk staff never take over an admin's mailbox.
    assert api(app, token, "POST", "/mailboxes/admin@a.example/password-reset").status_code == 403


def test_problems_are_translated_and_name_the_field(app, people, db):
    token = make_token(app, db, "admin")
    response = api(app, token, "POST", "/domains/a.example/mailboxes", {"local_part": "x", "colour": "red"},
                   **{"Accept-Language": "ko"})
    assert response.status_code == 400 and response.mimetype == "application/problem+json"
    body = response.get_json()
    assert body["errors"] == {"colour": ["알 수 없는 필드입니다."]}
    assert body["title"] == "잘못된 요청"
    english = api(app, token, "POST", "/domains/a.example/mailboxes", {"quota": -1}).get_json()
    assert english["errors"] == {"local_part": ["This field is required."], "quota": ["Must be at least 0."]}
    taken = api(app, token, "POST", "/domains/a.example/mailboxes", {"local_part": "user"},
                **{"Accept-Language": "ko"})
    assert taken.status_code == 409 and "user@a.example" in taken.get_json()["detail"]
    assert api(app, None, "GET", "/domains", **{"Accept-Language": "ko"}).get_json()["title"] == "인증 필요"
    assert api(app, token, "GET", "/nothing").get_json()["status"] == 404
    assert api(app, token, "GET", "/domains?colour=red").status_code == 400
    assert api(app, token, "GET", "/domains?limit=0").status_code == 400
    assert api(app, token, "GET", "/domains?after=garbage").status_code == 400
    broken = make_client(app).post("/api/v1/domains/a.example/mailboxes", data="{not json",
                                   headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    assert broken.status_code == 400
    wrong_type = make_client(app).post("/api/v1/domains/a.example/mailboxes", data="local_part=x",
                                       headers={"Authorization": f"Bearer {token}"})
    assert wrong_type.status_code == 415


def test_body_size_and_rate_limits(app_factory, people, db):
    app = app_factory(API_CALLS_PER_MINUTE=3, API_MAX_BODY_BYTES=200)
    token = make_token(app, db, "admin")
    big = api(app, token, "POST", "/domains/a.example/aliases",
              {"address": "x@a.example", "destinations": ["user@a.example"] * 20})
    assert big.status_code == 413
    assert api(app, token, "GET", "/domains").status_code == 200
    assert api(app, token, "GET", "/domains").status_code == 200
    limited = api(app, token, "GET", "/domains")
    assert limited.status_code == 429 and 1 <= int(limited.headers["Retry-After"]) <= 61
    # Each token has its own allowance.
    assert api(app, make_token(app, db, "root"), "GET", "/domains").status_code == 200


def test_lists_page_with_the_cursor(app, people, db):
    for n in range(7):
        make_mailbox(db, f"m{n}@a.example", PASSWORD)
    token = make_token(app, db, "admin")
    seen, after = [], None
    while True:
        query = "/domains/a.example/mailboxes?limit=3" + (f"&after={after}" if after else "")
        page = api(app, token, "GET", query)
        assert_matches_schema(page, "GET", "/domains/{domain}/mailboxes")
        seen += [m["address"] for m in page.get_json()["items"]]
        after = page.get_json()["next"]
        if after is None:
            break
    assert seen == sorted(seen) and len(seen) == len(set(seen)) == 12
    assert [m["address"] for m in api(app, token, "GET", "/domains/a.example/mailboxes?q=m3").get_json()["items"]] \
        == ["m3@a.example"]


def test_the_openapi_document_describes_every_route(app):
    document = make_client(app).get("/api/v1/openapi.json").get_json()
    assert document["openapi"] == "3.1.0"
    routed = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("api."):
            path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule.removeprefix("/api/v1"))  # <alias:address> too
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                routed.add((method.lower(), path))
    described = {(method, path) for path, operations in document["paths"].items() for method in operations}
    assert routed == described


def test_forwarding_set_through_the_api_is_delivered_by_postfix(app, people, db, mail_stack):
    token = make_token(app, db, "admin")
    response = api(app, token, "PUT", "/mailboxes/user@a.example/forwarding",
                   {"destinations": ["other@a.example"], "keep_copy": True})
    assert_matches_schema(response, "PUT", "/mailboxes/{address}/forwarding")
    assert response.get_json() == {"destinations": ["other@a.example"], "keep_copy": True}
    response.close()  # as the server does once the answer is out: the owner's notice goes then
    notice = wait_for_maildir_message(mail_stack.mail_root / "a.example" / "user",
                                      "Mail to user@a.example is now forwarded")
    text = notice.get_payload()[0].get_payload(decode=True).decode()
    assert "other@a.example" in text and "an administrator" in text and PEOPLE["admin"] not in text
    send_mail(mail_stack.smtp_port, "user@a.example", "forwarded by the api")
    for local in ("other", "user"):
        wait_for_maildir_message(mail_stack.mail_root / "a.example" / local, "forwarded by the api")
    # The owner's checks hold for an admin too: no loop back through other@.
    assert api(app, token, "PUT", "/mailboxes/user@a.example/forwarding",
               {"destinations": ["other@a.example"], "keep_copy": False}).status_code == 200
    loop = api(app, token, "PUT", "/mailboxes/other@a.example/forwarding",
               {"destinations": ["user@a.example"], "keep_copy": False})
    assert loop.status_code == 409 and loop.get_json()["errors"]["destinations"]
    # Nor may a domain admin route a superadmin's mail (a role holder's mailbox is not theirs to manage).
    response = api(app, token, "PUT", "/mailboxes/root@a.example/forwarding",
                   {"destinations": ["user@a.example"], "keep_copy": False})
    assert response.status_code == 403
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases WHERE source = 'root@a.example'"
                      ).fetchone()["n"] == 0


def test_a_mailbox_disabled_through_the_api_is_refused_by_postfix(app, people, db, mail_stack):
    import smtplib

    token = make_token(app, db, "help")
    response = api(app, token, "POST", "/mailboxes/user@a.example/disable", {"reason": "left the school"})
    assert_matches_schema(response, "POST", "/mailboxes/{address}/disable")
    assert response.get_json() == {"address": "user@a.example", "changed": True}
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        send_mail(mail_stack.smtp_port, "user@a.example", "to a disabled mailbox")
    assert api(app, token, "POST", "/mailboxes/user@a.example/enable").get_json()["changed"] is True
    send_mail(mail_stack.smtp_port, "user@a.example", "enabled again")
    wait_for_maildir_message(mail_stack.mail_root / "a.example" / "user", "enabled again")
    entries = api(app, make_token(app, db, "admin"), "GET", "/audit?target=user@a.example").get_json()["items"]
    help_token = db.execute("SELECT id FROM portal_api_tokens WHERE name = 'help sync'").fetchone()["id"]
    assert [(e["action"], e["actor"], e["token"]) for e in entries] == [
        ("mailbox.enable", PEOPLE["help"], help_token), ("mailbox.disable", PEOPLE["help"], help_token)]
    assert entries[1]["summary"]["reason"] == "left the school"


def test_superadmin_provisions_a_domain_and_its_admin(app, people, db, mail_stack):
    token = make_token(app, db, "root")
    response = api(app, token, "POST", "/domains", {"name": "School.Example", "max_mailboxes": 2,
                                                     "default_quota": "1G"})
    assert_matches_schema(response, "POST", "/domains")
    assert response.get_json()["name"] == "school.example"
    created = api(app, token, "POST", "/domains/school.example/mailboxes", {"local_part": "head"}).get_json()
    granted = api(app, token, "POST", "/roles", {"address": "head@school.example", "role": "domain_admin",
                                                 "domain": "school.example"})
    # A one-time password still in place: its holder must choose their own before holding a role.
    assert granted.status_code == 409 and "one-time password" in granted.get_json()["detail"]
    db.execute("UPDATE virtual_users SET password_must_change = false WHERE email = %s", (created["address"],))
    granted = api(app, token, "POST", "/roles", {"address": "head@school.example", "role": "domain_admin",
                                                 "domain": "school.example"})
    assert_matches_schema(granted, "POST", "/roles")
    roles = api(app, token, "GET", "/roles?q=head").get_json()["items"]
    assert [(r["address"], r["role"], r["domain"]) for r in roles] == [
        ("head@school.example", "domain_admin", "school.example")]
    # The domain's limit holds for the API as for the pages.
    assert api(app, token, "POST", "/domains/school.example/mailboxes", {"local_part": "b"}).status_code == 201
    full = api(app, token, "POST", "/domains/school.example/mailboxes", {"local_part": "c"})
    assert full.status_code == 409
    changed = api(app, token, "PATCH", "/domains/school.example", {"max_mailboxes": 3, "active": False})
    assert_matches_schema(changed, "PATCH", "/domains/{domain}")
    assert (changed.get_json()["max_mailboxes"], changed.get_json()["active"]) == (3, False)
    assert api(app, token, "DELETE", f"/roles/{granted.get_json()['id']}").status_code == 204
    assert api(app, token, "DELETE", "/domains/school.example").status_code == 204
    assert api(app, token, "GET", "/domains/school.example").status_code == 404
    assert db.execute("SELECT count(*) AS n FROM virtual_users WHERE email LIKE '%%@school.example'"
                      ).fetchone()["n"] == 0


def test_hostile_input_gets_a_clear_answer_never_a_5xx(app, people, db):
    """What the hostile review sent: each answered 4xx with a problem, nothing changed."""
    token = make_token(app, db, "admin")
    before = db.execute("SELECT email, active, quota_bytes, display_name FROM virtual_users ORDER BY 1").fetchall()
    auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    client = make_client(app)
    cases = [
        ("GET", "/api/v1/domains/a%00b", None, 404),
        ("GET", "/api/v1/mailboxes/user%00@a.example", None, 404),
        ("GET", "/api/v1/domains?q=%00", None, 400),
        ("GET", "/api/v1/audit?actor=%00", None, 400),
        ("POST", "/api/v1/domains/a.example/mailboxes", "[" * 1100, 400),
        ("POST", "/api/v1/domains/a.example/mailboxes", '{"local_part": "x", "quota": 1' + "0" * 400 + "}", 400),
        ("POST", "/api/v1/domains/a.example/mailboxes", '{"local_part": "x", "quota": "1' + "0" * 400 + ' GB"}',
         400),
        ("POST", "/api/v1/domains/a.example/mailboxes",
         '{"local_part": "x", "password": "Xq9\\ud800vLm3#pQz8wRt long enough"}', 400),
        ("POST", "/api/v1/domains/a.example/mailboxes", '{"local_part": "x\\u0000y"}', 400),
        ("POST", "/api/v1/domains/a.example/mailboxes", '{"local_part": "x", "display_name": "a\\nb"}', 400),
        ("PATCH", "/api/v1/mailboxes/user@a.example", '{"display_name": "\\u202e"}', 400),
        ("POST", "/api/v1/mailboxes/user@a.example/disable", "{}", 400),
        ("POST", "/api/v1/mailboxes/user@a.example/disable", '{"reason": "a\\u0000b"}', 400),
        ("POST", "/api/v1/mailboxes/user@a.example/disable", '{"reason": "line\\nbreak"}', 400),
    ]
    for method, path, body, expected in cases:
        response = client.open(path, method=method, data=body, headers=auth)
        assert response.status_code == expected, (method, path, body and body[:60], response.get_data(as_text=True))
        assert response.mimetype == "application/problem+json"
    after = db.execute("SELECT email, active, quota_bytes, display_name FROM virtual_users ORDER BY 1").fetchall()
    assert after == before


def test_token_limits_on_the_page_and_in_the_rule(app, people, db):
    with pytest.raises(token_rules.TokenRefused, match="ten years"):
        make_token(app, db, "admin", expires_at=datetime.now(UTC) + timedelta(days=4000))
    admin = people["admin"]
    response = admin.post("/account/api-tokens", data={"csrf_token": csrf_token(admin, "/account/api-tokens"),
                                                       "name": "far", "expires_on": "9999-12-31"})
    assert response.status_code == 400 and "ten years" in response.get_data(as_text=True)
    response = admin.post("/account/api-tokens", data={"csrf_token": csrf_token(admin, "/account/api-tokens"),
                                                       "name": "x\x00y"})
    assert response.status_code == 400
    response = admin.post("/account/api-tokens", data={"csrf_token": csrf_token(admin, "/account/api-tokens"),
                                                       "name": "upper", "domains": "A.Example"})
    assert response.status_code == 201  # domain names are read as the pages read them
    for _n in range(token_rules.MAX_LIVE_TOKENS - 1):
        make_token(app, db, "admin")
    with pytest.raises(token_rules.TokenRefused, match="revoke one"):
        make_token(app, db, "admin")


def test_a_password_reset_by_someone_else_revokes_the_holders_tokens(app, people, db):
    token = make_token(app, db, "help")
    assert api(app, token, "GET", "/me").status_code == 200
    root = make_token(app, db, "root")
    response = api(app, root, "POST", "/mailboxes/help@a.example/password-reset")
    assert response.status_code == 200
    assert api(app, token, "GET", "/me").status_code == 401
    (row,) = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'mailbox.password_reset'").fetchall()
    assert row["summary"]["api_tokens_revoked"] == 1


def test_the_second_hostile_review(app, people, db):
    """What the review of 2026-12-01 found, each now answered as it should be."""
    root, admin = make_token(app, db, "root"), make_token(app, db, "admin")
    # An empty or blank domain in a role grant is a mistake, never "every domain" (only null is).
    for blank in ("", "  "):
        refused = api(app, root, "POST", "/roles", {"address": "other@a.example", "role": "helpdesk",
                                                    "domain": blank})
        assert refused.status_code == 400 and "domain" in refused.get_json()["errors"]
    assert db.execute("SELECT count(*) AS n FROM portal_roles r JOIN virtual_users u ON u.id = r.user_id"
                      " WHERE u.email = 'other@a.example'").fetchone()["n"] == 0
    # A field given twice in a body or a query is refused, not silently the last (or first) one.
    client = make_client(app)
    twice = client.put("/api/v1/mailboxes/user@a.example/forwarding",
                       data='{"destinations": ["other@a.example"], "keep_copy": true, "keep_copy": false}',
                       headers={"Authorization": f"Bearer {admin}", "Content-Type": "application/json"})
    assert twice.status_code == 400 and twice.get_json()["errors"] == {"keep_copy": ["Give each field once."]}
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 0
    assert api(app, admin, "GET", "/domains?limit=1&limit=500").status_code == 400
    # Sizes in other scripts' digits are not sizes.
    for size in ("\u0663G", "\uff12G"):
        wrong = api(app, admin, "POST", "/domains/a.example/mailboxes", {"local_part": "digits", "quota": size})
        assert wrong.status_code == 400 and "quota" in wrong.get_json()["errors"]
    # A problem with an alias's address is told under "address", not "destinations".
    reserved = api(app, admin, "POST", "/domains/a.example/aliases",
                   {"address": "user@a.example", "destinations": ["other@a.example"]})
    assert reserved.status_code == 409 and list(reserved.get_json()["errors"]) == ["address"]
    # A mailbox's forwarding is listed as its owner's, as it is refused to the alias calls.
    assert api(app, admin, "PUT", "/mailboxes/user@a.example/forwarding",
               {"destinations": ["other@a.example"], "keep_copy": True}).status_code == 200
    listed = {a["address"]: a for a in api(app, admin, "GET", "/domains/a.example/aliases").get_json()["items"]}
    assert listed["user@a.example"]["personal"] is True
    assert api(app, admin, "DELETE", "/domains/a.example/aliases/user@a.example").status_code == 404
    # A domain in a path is named as in an address: any case, a final dot.
    assert api(app, admin, "GET", "/domains/A.Example.").status_code == 200
    # Input that is wrong in itself is a 400, not a conflict.
    assert api(app, root, "POST", "/domains", {"name": "a..b"}).status_code == 400
    assert api(app, root, "POST", "/roles", {"address": "nobody@a.example", "role": "helpdesk",
                                             "domain": "a.example"}).status_code == 400
    # "Any language" gets the default one; the type message is translated whole.
    assert api(app, None, "GET", "/domains", **{"Accept-Language": "*"}).get_json()["title"] == "Unauthorized"
    typed = api(app, admin, "POST", "/domains/a.example/mailboxes", {"local_part": 5}, **{"Accept-Language": "ko"})
    assert " or " not in typed.get_json()["errors"]["local_part"][0]


def test_an_alias_with_a_slash_is_changed_and_removed(app, people, db, mail_stack):
    token = make_token(app, db, "admin")
    made = api(app, token, "POST", "/domains/a.example/aliases",
               {"address": "sales/eu@a.example", "destinations": ["other@a.example"]})
    assert made.status_code == 201
    send_mail(mail_stack.smtp_port, "sales/eu@a.example", "slash alias")
    wait_for_maildir_message(mail_stack.mail_root / "a.example" / "other", "slash alias")
    replaced = api(app, token, "PUT", "/domains/a.example/aliases/sales%2Feu@a.example",
                   {"destinations": ["user@a.example"]})
    assert replaced.status_code == 200 and replaced.get_json()["destinations"] == ["user@a.example"]
    # The admin pages open it too.
    page_client = make_client(app)
    assert sign_in(page_client, PEOPLE["admin"], PASSWORD).status_code == 302
    assert page_client.get("/admin/domains/a.example/aliases/sales/eu@a.example").status_code == 200
    assert page_client.get("/admin/domains/a.example/aliases/sales/eu@a.example/delete").status_code == 200
    removed = api(app, token, "DELETE", "/domains/a.example/aliases/sales%2Feu@a.example")
    assert removed.status_code == 204 and "Content-Type" not in removed.headers and removed.data == b""
    assert db.execute("SELECT count(*) AS n FROM virtual_aliases").fetchone()["n"] == 0
