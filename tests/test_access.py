"""Every route of the app, every method, as every kind of user: who gets what.

The routes come from app.url_map, so a new route fails this test until its
expected answers are written down here.
"""

from __future__ import annotations

import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox
from tests.test_api_access import API_EXPECTED

PASSWORD = "a long enough test password 5"
ROLES = ("anonymous", "user", "forced_change", "domain_admin", "superadmin")
# Two more kinds: a helpdesk of every domain and the domain admin of another domain.
MORE_ROLES = ("helpdesk", "admin_b")

# endpoint -> expected status for (anonymous, user, forced_change, domain_admin, superadmin) on GET.
# 302 to sign-in for anonymous; 302 to the password page while a change is forced.
GET_EXPECTED = {
    "health.healthz": (200, 200, 200, 200, 200),
    "favicon": (200, 200, 200, 200, 200),
    "auth.login": (200, 302, 302, 302, 302),
    # Recovery: the request form for anyone; a link page without a valid link is gone (410) for anyone.
    "auth.forgot": (200, 200, 200, 200, 200),
    "auth.recover": (410, 410, 410, 410, 410),
    "auth.verify_recovery": (410, 410, 410, 410, 410),
    "account.recovery": (302, 200, 302, 200, 200),
    "account.index": (302, 200, 302, 200, 200),
    "account.password": (302, 200, 200, 200, 200),
    "account.forwarding": (302, 200, 302, 200, 200),
    "account.storage": (302, 200, 302, 200, 200),
    "account.vacation": (302, 200, 302, 200, 200),
    "account.filters": (302, 200, 302, 200, 200),
    "admin.index": (302, 403, 302, 200, 200),
    "admin.domains": (302, 403, 302, 200, 200),
    "admin.mailboxes": (302, 403, 302, 200, 200),
    "admin.aliases": (302, 403, 302, 200, 200),
    "admin.new_mailbox": (302, 403, 302, 200, 200),
    "admin.edit_mailbox": (302, 403, 302, 200, 200),
    "admin.delete_mailbox": (302, 403, 302, 200, 200),
    "admin.new_domain": (302, 403, 302, 403, 200),
    "admin.domain_settings": (302, 403, 302, 200, 200),
    "admin.new_alias": (302, 403, 302, 200, 200),
    "admin.edit_alias": (302, 403, 302, 200, 200),
    "admin.delete_alias": (302, 403, 302, 200, 200),
    "admin.unlink_alias_domain": (302, 403, 302, 403, 200),
    # The superadmin's own mailbox is in m.example: nobody deletes the domain they sign in from.
    "admin.delete_domain": (302, 403, 302, 403, 403),
    "admin.roles": (302, 403, 302, 403, 200),
    "admin.audit_log": (302, 403, 302, 200, 200),
    "admin.audit_csv": (302, 403, 302, 200, 200),
    "admin.removals": (302, 403, 302, 200, 200),
    # GET leads back to the list (the review page answers a POST: a language switch there comes back by GET).
    "admin.bulk_mailboxes": (302, 403, 302, 302, 302),
    "helpdesk.index": (302, 403, 302, 200, 200),
    "helpdesk.mailbox": (302, 403, 302, 200, 200),
    "helpdesk.vacation": (302, 403, 302, 200, 200),
    "helpdesk.recovery": (302, 403, 302, 200, 200),
    "account.api_tokens": (302, 403, 302, 200, 200),
    # Two-step sign-in: the second step without a right password a moment ago goes back to the sign-in page;
    # the QR page without a pending secret goes back too.
    "auth.second_factor": (302, 302, 302, 302, 302),
    "account.security": (302, 200, 302, 200, 200),
    "account.totp": (302, 302, 302, 302, 302),
    "account.app_passwords": (302, 200, 302, 200, 200),
}
# Values for the URL arguments: things that exist and are in the domain admin's domain.
URL_ARGS = {"alias_id": 1, "role_id": 1, "token_id": 1, "domain": "m.example", "name": "m.example",
            "address": "user@m.example", "source": "team@m.example",
            "alias_domain": "m.test", "grant_id": 1, "state": "off", "passkey_id": 1, "app_password_id": 1}
# Routes that only take POST; without a CSRF token every one of them answers 400,
# whoever asks (tests/test_app.py). Here: with a token, who may use them.
POST_ONLY = {
    "auth.logout", "account.save_forwarding", "account.add_personal_alias",
    "account.delete_personal_alias", "admin.grant_role", "admin.revoke_role", "helpdesk.reset_password",
    "helpdesk.unlock", "helpdesk.disable", "helpdesk.enable", "auth.set_language", "admin.link_alias_domain",
    "admin.alias_domain_state", "admin.grant_send_as", "admin.revoke_send_as", "account.create_api_token",
    "account.revoke_api_token", "auth.set_colour_mode", "account.save_vacation", "account.save_filters",
    "account.save_recovery", "helpdesk.switch_recovery", "helpdesk.remove_recovery",
    "auth.passkey_sign_in_options", "auth.passkey_sign_in", "account.start_totp", "account.remove_totp",
    "account.renew_recovery_codes", "account.passkey_options", "account.add_passkey", "account.remove_passkey",
    "account.mail_clients", "account.revoke_app_password", "helpdesk.remove_second_factors",
    "admin.require_app_passwords",
}


STATIC = {"static", "bootstrap.static"}


@pytest.fixture
def clients(app, db):
    for address in ("user@m.example", "forced@m.example", "dadmin@m.example", "root@m.example"):
        make_mailbox(db, address, PASSWORD)
    db.execute("UPDATE virtual_users SET password_must_change = true WHERE email = 'forced@m.example'")
    runner = app.test_cli_runner()
    runner.invoke(args=["admin", "grant", "domain-admin", "dadmin@m.example", "m.example"])
    runner.invoke(args=["admin", "grant", "superadmin", "root@m.example"])
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@m.example',"
               " 'user@m.example' FROM virtual_domains WHERE name = 'm.example'")
    make_mailbox(db, "help@m.example", PASSWORD)
    make_mailbox(db, "badmin@b.example", PASSWORD)
    runner.invoke(args=["admin", "grant", "helpdesk", "help@m.example"])
    runner.invoke(args=["admin", "grant", "domain-admin", "badmin@b.example", "b.example"])
    assert runner.invoke(args=["alias-domain", "add", "m.test", "m.example"]).exit_code == 0
    made = {"anonymous": make_client(app)}
    for role, address in (("user", "user@m.example"), ("forced_change", "forced@m.example"),
                          ("domain_admin", "dadmin@m.example"), ("superadmin", "root@m.example"),
                          ("helpdesk", "help@m.example"), ("admin_b", "badmin@b.example")):
        made[role] = make_client(app)
        assert sign_in(made[role], address, PASSWORD).status_code == 302
    # Second factors for the removal routes to (not) remove: the user's session is live already.
    db.execute("INSERT INTO portal_totp (mailbox_id, secret, confirmed_at) SELECT id, 'JBSWY3DPEHPK3PXP', now()"
               " FROM virtual_users WHERE email IN ('user@m.example', 'dadmin@m.example')")
    return made


def test_every_route_is_in_the_table(app):
    # Static files: the portal's own and Bootstrap's (served by Bootstrap-Flask), the same for everyone.
    # The API's endpoints have their own table, by kind of token (tests/test_api_access.py).
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules() if rule.endpoint not in STATIC}
    assert endpoints == set(GET_EXPECTED) | POST_ONLY | {f"api.{name}" for name in API_EXPECTED}


def test_session_cookies_never_authenticate_the_api(app, clients):
    for rule in app.url_map.iter_rules():
        if not rule.endpoint.startswith("api.") or rule.endpoint == "api.openapi":
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for role in ROLES:
            for method in rule.methods - {"HEAD", "OPTIONS"}:
                response = clients[role].open(url, method=method, json={} if method != "GET" else None)
                assert response.status_code == 401, (role, method, url)


def test_get_matrix(app, clients):
    failures = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in GET_EXPECTED:
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for role, expected in zip(ROLES, GET_EXPECTED[rule.endpoint], strict=True):
            status = clients[role].get(url).status_code
            if status != expected:
                failures.append(f"{role} GET {url}: {status}, expected {expected}")
    assert failures == []


# endpoint -> (helpdesk, domain admin of b.example) on GET of the m.example URLs above.
MORE_EXPECTED = {
    "health.healthz": (200, 200),
    "favicon": (200, 200),
    "auth.login": (302, 302),
    "auth.forgot": (200, 200),
    "auth.recover": (410, 410),
    "auth.verify_recovery": (410, 410),
    "account.recovery": (200, 200),
    "account.index": (200, 200),
    "account.password": (200, 200),
    "account.forwarding": (200, 200),
    "account.storage": (200, 200),
    "account.vacation": (200, 200),
    "account.filters": (200, 200),
    "admin.index": (403, 200),
    "admin.domains": (403, 200),
    "admin.mailboxes": (403, 404),
    "admin.aliases": (403, 404),
    "admin.new_mailbox": (403, 404),
    "admin.edit_mailbox": (403, 404),
    "admin.delete_mailbox": (403, 404),
    "admin.new_domain": (403, 403),
    "admin.domain_settings": (403, 404),
    "admin.new_alias": (403, 404),
    "admin.edit_alias": (403, 404),
    "admin.delete_alias": (403, 404),
    "admin.unlink_alias_domain": (403, 403),
    "admin.delete_domain": (403, 403),
    "admin.roles": (403, 403),
    "admin.audit_log": (403, 200),
    "admin.audit_csv": (403, 200),
    "admin.removals": (403, 200),
    "admin.bulk_mailboxes": (403, 404),
    "helpdesk.index": (200, 200),
    "helpdesk.mailbox": (200, 403),
    "helpdesk.vacation": (200, 403),
    "helpdesk.recovery": (200, 200),
    "account.api_tokens": (200, 200),
    "auth.second_factor": (302, 302),
    "account.security": (200, 200),
    "account.totp": (302, 302),
    "account.app_passwords": (200, 200),
}


def test_get_matrix_for_helpdesk_and_the_other_domains_admin(app, clients):
    assert set(MORE_EXPECTED) == set(GET_EXPECTED)
    failures = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint not in MORE_EXPECTED:
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for role, expected in zip(MORE_ROLES, MORE_EXPECTED[rule.endpoint], strict=True):
            status = clients[role].get(url).status_code
            if status != expected:
                failures.append(f"{role} GET {url}: {status}, expected {expected}")
    assert failures == []


# What an admin POST could change: counts of every table it writes, and the newest mailbox change.
STATE = (
    "SELECT (SELECT count(*) FROM virtual_users) AS u, (SELECT count(*) FROM virtual_aliases) AS a,"
    " (SELECT count(*) FROM virtual_domains) AS d, (SELECT max(updated_at) FROM virtual_users) AS t,"
    " (SELECT count(*) FROM portal_roles) AS r, (SELECT count(*) FROM portal_audit_log) AS l,"
    " (SELECT count(*) FILTER (WHERE active) || '/' || count(*) FROM portal_alias_domains) AS ad,"
    " (SELECT count(*) FROM portal_send_as) AS s,"
    " (SELECT count(*) FROM portal_vacations) AS v, (SELECT count(*) FROM portal_mail_filters) AS f,"
    " (SELECT string_agg(name || allow_password_recovery::text, ',' ORDER BY name) FROM virtual_domains) AS rec,"
    " (SELECT count(*) FROM portal_mailbox_settings WHERE recovery_address IS NOT NULL) AS ra,"
    " (SELECT count(*) FROM portal_totp) AS totp, (SELECT count(*) FROM portal_webauthn_credentials) AS pk,"
    " (SELECT count(*) FROM portal_app_passwords) AS ap,"
    " (SELECT string_agg(name || require_app_passwords::text, ',' ORDER BY name) FROM virtual_domains) AS rap"
)


@pytest.mark.parametrize("role", ["helpdesk", "admin_b", "user"])
def test_no_admin_post_changes_anything_from_outside(app, clients, db, role):
    """POSTs with a valid token to every admin route of m.example (and, but for the helpdesk, every helpdesk
    route): refused, nothing written."""
    client = clients[role]
    token = csrf_token(client, "/")
    before = db.execute(STATE).fetchone()
    for rule in app.url_map.iter_rules():
        if "POST" not in rule.methods:
            continue
        if not (rule.endpoint.startswith("admin.") or rule.endpoint.startswith("helpdesk.") and role != "helpdesk"):
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        data = {"csrf_token": token, "local_part": "intruder", "generate": "y", "confirm": "m.example",
                "destinations": "user@m.example", "name": "evil.example", "quota": "", "active": "",
                "address": f"{role}@m.example", "role": "superadmin", "domain": "", "reason": "x",
                "mailbox": [f"{role}@m.example", "user@m.example"], "action": "delete", "confirmed": "yes"}
        status = client.post(url, data=data).status_code
        assert status in (403, 404), f"{role} POST {url}: {status}"
    after = db.execute(STATE).fetchone()
    assert after == before


def test_only_a_superadmin_posts_to_the_alias_domain_routes(app, clients, db):
    """The domain admin of m.example sees its alias domains but links, disables and unlinks none."""
    client = clients["domain_admin"]
    token = csrf_token(client, "/")
    before = db.execute(STATE).fetchone()
    for path, data in (("/admin/domains/m.example/alias-domains", {"name": "evil.test"}),
                       ("/admin/domains/m.example/alias-domains/m.test/state", {"active": "0"}),
                       ("/admin/domains/m.example/alias-domains/m.test/delete", {})):
        assert client.post(path, data={"csrf_token": token, **data}).status_code == 403, path
    assert db.execute(STATE).fetchone() == before
    page = client.get("/admin/domains/m.example/settings").get_data(as_text=True)
    assert "m.test" in page and "Link alias domain" not in page


def test_post_only_routes_refuse_get(app, clients):
    get_paths = {rule.rule for rule in app.url_map.iter_rules() if "GET" in rule.methods}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in POST_ONLY and rule.rule not in get_paths:
            url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
            for role in ROLES:
                assert clients[role].get(url).status_code == 405, (role, url)


@pytest.mark.parametrize("path", ["/account/forwarding", "/account/aliases", "/account/aliases/1/delete",
                                  "/account/vacation", "/account/filters", "/account/recovery",
                                  "/account/app-passwords", "/account/security/mail-clients",
                                  "/account/security/totp/start", "/account/security/passkeys/options"])
def test_self_service_posts_need_a_finished_sign_in(app, clients, path):
    anonymous = clients["anonymous"]
    token = csrf_token(anonymous, "/auth/login")
    assert anonymous.post(path, data={"csrf_token": token}).status_code == 302
    forced = clients["forced_change"]
    token = csrf_token(forced, "/account/password")
    response = forced.post(path, data={"csrf_token": token, "destinations": "x@y.example", "local_part": "x"})
    assert response.status_code == 302 and response.headers["Location"] == "/account/password"


@pytest.mark.parametrize("page", ["mailboxes", "aliases", "mailboxes/new"])
def test_domain_admin_sees_only_their_domains(app, clients, db, page):
    make_mailbox(db, "someone@other.example", PASSWORD)
    assert clients["domain_admin"].get(f"/admin/domains/other.example/{page}").status_code == 404
    assert clients["domain_admin"].get(f"/admin/domains/missing.example/{page}").status_code == 404
    assert clients["superadmin"].get(f"/admin/domains/other.example/{page}").status_code == 200
    listing = clients["domain_admin"].get("/admin/domains").get_data(as_text=True)
    assert "m.example" in listing and "other.example" not in listing
    assert "other.example" in clients["superadmin"].get("/admin/domains").get_data(as_text=True)


def test_static_files_need_no_sign_in(app, clients):
    for url in ("/static/style.css", "/bootstrap/static/css/bootstrap.min.css"):
        response = clients["anonymous"].get(url)
        status, mimetype = response.status_code, response.mimetype
        response.close()  # a file response holds the file open until closed
        assert status == 200 and mimetype == "text/css", url
