"""Sweeps over the whole app: every route and method, every form field and query parameter, hostile values.

They walk app.url_map and the forms the pages themselves render, so a new route
or field is covered the day it is added.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import psycopg
import pytest

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "a long enough test password 21"
METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
# Who may call these without signing in: the sign-in page, the language and colour switches, health,
# static files and the icon.
PUBLIC = {"auth.login", "auth.set_language", "auth.set_colour_mode", "favicon", "health.healthz", "static",
          "bootstrap.static", "api.openapi",
          # For who cannot sign in: they act only on a link's token (tests/test_notices.py).
          "auth.forgot", "auth.recover", "auth.verify_recovery",
          # The second step acts only for a browser whose password was right a moment ago (test_second_factors.py).
          "auth.passkey_sign_in_options", "auth.passkey_sign_in"}
URL_ARGS = {"name": "s.example", "address": "user@s.example", "source": "team@s.example", "role_id": 1,
            "alias_id": 1, "filename": "style.css", "alias_domain": "s.test", "grant_id": 1, "token_id": 1,
            "domain": "s.example", "state": "off", "passkey_id": 1, "app_password_id": 1}

PAYLOADS = ["' OR '1'='1' --", '"', "\\", ";", "$$", "%", "_", "<script>alert(1)</script>", "{{7*7}}",
            "a\r\nb", "a\x00b", "x" * 5000, "\u212aelvin", "b\u00fccher.example", "\u0430dmin"]


@pytest.fixture
def site(app, db):
    for address in ("user@s.example", "root@s.example"):
        make_mailbox(db, address, PASSWORD)
    app.test_cli_runner().invoke(args=["admin", "grant", "superadmin", "root@s.example"])
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@s.example',"
               " 'user@s.example' FROM virtual_domains WHERE name = 's.example'")
    root = make_client(app)
    assert sign_in(root, "root@s.example", PASSWORD).status_code == 302
    return root


def test_anonymous_gets_nothing_but_a_way_to_sign_in(app, site):
    anonymous = make_client(app)
    token = csrf_token(anonymous, "/auth/login")
    odd = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for method in METHODS:
            response = anonymous.open(url, method=method, data={"csrf_token": token})
            status = response.status_code
            if status == 302 and response.headers["Location"].startswith("/auth/login"):
                continue
            if status in (401, 403, 405):
                continue
            odd.append(f"{method} {url}: {status}")
    assert odd == []


def _forms(html: str):
    """(action, {field: value}) of each POST form of a page, as a browser would submit it unchanged."""
    for match in re.finditer(r'(?s)<form method="post" action="([^"]+)"[^>]*>(.*?)</form>', html):
        action, body = match.group(1).replace("&amp;", "&"), match.group(2)
        fields = {}
        for name, value in re.findall(r'<input [^>]*name="([^"]+)"[^>]*?(?:value="([^"]*)")?[^>]*>', body):
            fields[name] = value
        for name in re.findall(r'<textarea [^>]*name="([^"]+)"', body):
            fields[name] = ""
        for name, first in re.findall(r'(?s)<select [^>]*name="([^"]+)"[^>]*>\s*<option value="([^"]*)"', body):
            fields[name] = first
        yield action, fields


# Pages whose forms the sweep fills (sign-in and password change go through Dovecot's 2 s failure delay;
# they have their own tests of bad input).
FORM_PAGES = ["/account/forwarding", "/admin/domains/new", "/admin/domains/s.example/settings",
              "/admin/domains/s.example/mailboxes/new", "/admin/domains/s.example/mailboxes/user@s.example",
              "/admin/domains/s.example/aliases/new", "/admin/domains/s.example/aliases/team@s.example",
              "/admin/roles", "/helpdesk/mailboxes/user@s.example"]
SKIP_FIELDS = {"csrf_token", "next", "lang"}


def test_hostile_values_in_every_form_field(app, db, site):
    failures = []
    for page in FORM_PAGES:
        html = site.get(page).get_data(as_text=True)
        for action, fields in _forms(html):
            if "logout" in action or "language" in action or "reset" in action:
                continue
            for field in [f for f in fields if f not in SKIP_FIELDS]:
                for payload in PAYLOADS:
                    data = {**fields, field: payload}
                    response = site.post(action, data=data)
                    body = response.get_data(as_text=True)
                    if response.status_code >= 500 or "Traceback" in body:
                        failures.append(f"{action} {field}={payload[:20]!r}: {response.status_code}")
                    if "<script>alert(1)</script>" in body or ">49<" in body:
                        failures.append(f"{action} {field}: payload came back unescaped")
        assert site.get("/").status_code == 200, f"the superadmin lost the session on {page}"
    assert failures == []
    # Whatever was stored comes back escaped on every list, audit and export page.
    for page in ("/admin/domains", "/admin/domains/s.example/mailboxes", "/admin/domains/s.example/aliases",
                 "/admin/roles", "/admin/audit", "/helpdesk/", "/", "/admin/audit.csv?action=mailbox.update"):
        response = site.get(page)
        body = response.get_data(as_text=True)
        response.close()
        assert "<script>alert(1)</script>" not in body or page.endswith(".csv"), page
    stored = db.execute("SELECT string_agg(email, ' ') AS e FROM virtual_users").fetchone()["e"]
    assert "<" not in stored and "'" not in stored and "\u212a" not in stored


@pytest.mark.parametrize("name", ["q", "mode", "sort", "after", "actor", "target", "action", "since", "until"])
def test_hostile_values_in_every_query_parameter(app, site, name):
    lists = ["/admin/domains", "/admin/domains/s.example/mailboxes", "/admin/domains/s.example/aliases",
             "/admin/roles", "/admin/audit", "/admin/audit.csv", "/helpdesk/"]
    for url in lists:
        for payload in PAYLOADS:
            response = site.get(url, query_string={name: payload})
            body = response.get_data(as_text=True)
            response.close()  # the CSV export streams: closing ends its request, as a WSGI server does
            assert response.status_code in (200, 400), (url, name, payload[:20], response.status_code)
            assert "<script>alert(1)</script>" not in body and "Traceback" not in body, (url, name)


def test_a_spoofed_host_never_reaches_a_page_or_a_redirect(app, site):
    anonymous = make_client(app)
    for client, path in ((anonymous, "/"), (anonymous, "/auth/login"), (site, "/"), (site, "/admin/"),
                         (anonymous, "/admin/roles")):
        response = client.get(path, headers={"Host": "evil.example"})
        assert "evil.example" not in response.get_data(as_text=True)
        assert "evil.example" not in response.headers.get("Location", "")


def test_cookies_and_caching_in_production_settings(app_factory, db):
    import secrets

    make_mailbox(db, "prod@s.example", PASSWORD)
    app = app_factory(TESTING=False, SECRET_KEY=secrets.token_hex(32), COOKIE_SECURE=True)
    client = make_client(app)
    page = client.get("/auth/login", base_url="https://localhost").get_data(as_text=True)
    token = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"|name="csrf_token" value="([^"]+)"', page)
    token = token.group(1) or token.group(2)
    response = client.post("/auth/login", data={"csrf_token": token, "address": "prod@s.example",
                                                "password": PASSWORD}, base_url="https://localhost",
                           headers={"Referer": "https://localhost/auth/login"})  # over HTTPS, CSRF checks it
    assert response.status_code == 302, response.get_data(as_text=True)[:500]
    cookie = next(c for c in response.headers.getlist("Set-Cookie") if c.startswith("portal_session="))
    assert "Secure" in cookie and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    page = client.get("/", base_url="https://localhost")
    assert page.status_code == 200 and page.headers["Cache-Control"] == "no-store"


def test_no_sql_is_built_by_string_formatting():
    """execute() and sql.SQL() take constant text; values travel as parameters."""
    found = []
    for path in (ROOT / "portal").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or not node.args:
                continue
            name = getattr(node.func, "attr", getattr(node.func, "id", ""))
            if name not in ("execute", "SQL", "copy", "executemany"):
                continue
            first = node.args[0]
            formatted = isinstance(first, ast.JoinedStr) or (
                isinstance(first, ast.BinOp) and isinstance(first.op, (ast.Mod, ast.Add))) or (
                isinstance(first, ast.Call) and getattr(first.func, "attr", "") == "format")
            if formatted:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    # The COPY column lists of portal/rules/csv_transfer.py are joined from constant tuples of the module.
    allowed = {"portal/rules/csv_transfer.py"}
    assert [f for f in found if f.split(":")[0] not in allowed] == []


@pytest.mark.parametrize("spelling", ["USER@S.EXAMPLE", "user@S.example", " user@s.example ", "user@s.example."])
def test_one_identity_whatever_the_spelling(app, site, db, spelling):
    # The same mailbox: signing in works, creating it again is refused.
    assert sign_in(make_client(app), spelling.strip(), PASSWORD).status_code == 302 or spelling.endswith(".")
    result = app.test_cli_runner().invoke(args=["mailbox", "add", spelling, "--generate"])
    assert result.exit_code != 0
    assert db.execute("SELECT count(*) AS n FROM virtual_users").fetchone()["n"] == 2


def test_idn_and_lookalikes(app, db):
    runner = app.test_cli_runner()
    assert runner.invoke(args=["domain", "add", "b\u00fccher.example"]).exit_code == 0
    again = runner.invoke(args=["domain", "add", "xn--bcher-kva.example"])
    assert again.exit_code != 0 and "already exists" in again.output
    assert runner.invoke(args=["domain", "add", "B\u00dcCHER.example"]).exit_code != 0
    assert db.execute("SELECT name FROM virtual_domains").fetchall() == [{"name": "xn--bcher-kva.example"}]
    lookalike = runner.invoke(args=["mailbox", "add", "\u212aelvin@xn--bcher-kva.example", "--generate"])
    assert lookalike.exit_code != 0


def test_the_database_refuses_other_spellings_too(db):
    domain_id = db.execute("INSERT INTO virtual_domains (name) VALUES ('c.example') RETURNING id").fetchone()["id"]
    db.execute("INSERT INTO virtual_users (domain_id, email, password) VALUES (%s, 'anna@c.example', 'x')",
               (domain_id,))
    for email in ("Anna@c.example", "ANNA@C.EXAMPLE"):
        with pytest.raises(psycopg.errors.IntegrityError):
            db.execute("INSERT INTO virtual_users (domain_id, email, password) VALUES (%s, %s, 'x')",
                       (domain_id, email))
    with pytest.raises(psycopg.errors.IntegrityError):
        db.execute("INSERT INTO virtual_domains (name) VALUES ('C.example')")


@pytest.mark.parametrize("kind", ["stored hash", "hash without prefix", "passdb field"])
def test_what_comparable_systems_got_wrong_is_just_a_wrong_password(app, db, kind):
    """iRedAdmin accepted the stored hash as the password; mailcow let ' key=value' reach passdb fields."""
    make_mailbox(db, "hash@s.example", PASSWORD)
    stored = db.execute("SELECT password FROM virtual_users WHERE email = 'hash@s.example'").fetchone()["password"]
    attempt = {"stored hash": stored, "hash without prefix": stored.partition("}")[2],
               "passdb field": PASSWORD + " nopassword=y allow_nets=0.0.0.0/0"}[kind]
    client = make_client(app)
    response = sign_in(client, "hash@s.example", attempt)
    assert response.status_code == 200 and "The address or password is incorrect." in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


STATE = ("SELECT (SELECT count(*) FROM virtual_users) AS u, (SELECT count(*) FROM virtual_aliases) AS a,"
         " (SELECT count(*) FROM virtual_domains) AS d, (SELECT count(*) FROM portal_roles) AS r,"
         " (SELECT count(*) FROM portal_audit_log) AS l, (SELECT count(*) FROM portal_sessions) AS s,"
         " (SELECT max(updated_at) FROM virtual_users) AS tu, (SELECT max(updated_at) FROM virtual_domains) AS td")


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH", "DELETE"])
def test_no_change_without_a_csrf_token_even_for_a_superadmin(app, db, site, method):
    """Every route that takes a state-changing method, as a signed-in superadmin with plausible fields but no
    token: 400 (or 405 where the method is not taken), and nothing in the database moves."""
    before = db.execute(STATE).fetchone()
    fields = {"local_part": "x", "generate": "y", "destinations": "user@s.example", "confirm": "s.example",
              "name": "new.example", "address": "user@s.example", "role": "helpdesk", "reason": "r", "lang": "ko",
              "current_password": PASSWORD, "new_password": "a brand new password 77", "quota": "1 GB"}
    odd = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint in ("static", "bootstrap.static"):
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        status = site.open(url, method=method, data=fields).status_code
        # The API: the session cookie is not a credential there (401), whatever the method.
        if status not in ((401, 405) if rule.endpoint.startswith("api.") else (400, 405)):
            odd.append(f"{method} {url}: {status}")
    assert odd == []
    assert db.execute(STATE).fetchone() == before
