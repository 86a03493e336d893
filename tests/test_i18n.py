"""Korean and English: complete, current catalogs; no English left on Korean pages; the language switch."""

from __future__ import annotations

import ast
import html
import re
import subprocess
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from tests.conftest import csrf_token
from tests.conftest import make_client
from tests.conftest import sign_in
from tests.mail import make_mailbox

ROOT = Path(__file__).resolve().parent.parent
KO_PO = ROOT / "portal" / "translations" / "ko" / "LC_MESSAGES" / "messages.po"
PASSWORD = "a long enough test password 19"


def catalog():
    with KO_PO.open("rb") as source:
        return read_po(source, locale="ko")


def test_every_entry_has_its_korean_text():
    missing = [m.id for m in catalog() if m.id and (not m.string or m.fuzzy)]
    assert missing == [], f"{len(missing)} entries without a Korean translation, e.g. {missing[:5]}"


def test_placeholders_survive_translation():
    broken = []
    for message in catalog():
        if not message.id:
            continue
        if isinstance(message.id, tuple):  # plural forms: each translated form takes the plural's placeholders
            wanted = sorted(re.findall(r"%\((\w+)\)s", message.id[1]))
            if any(sorted(re.findall(r"%\((\w+)\)s", form)) != wanted for form in message.string):
                broken.append(message.id)
            continue
        wanted = sorted(re.findall(r"%\((\w+)\)s", message.id))
        if sorted(re.findall(r"%\((\w+)\)s", message.string)) != wanted:
            broken.append(message.id)
    assert broken == []


def test_the_catalog_holds_exactly_the_texts_of_the_code(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([str(ROOT / ".venv/bin/pybabel"), "-q", "extract", "-F", "babel.cfg", "-k", "_l", "-k", "_",
                    "--no-location", "--omit-header", "-o", str(pot), "."], cwd=ROOT, check=True)
    with pot.open("rb") as source:
        extracted = {m.id for m in read_po(source) if m.id}
    in_catalog = {m.id for m in catalog() if m.id}
    assert sorted(extracted - in_catalog) == [], "run scripts/catalog and translate the new entries"
    assert sorted(in_catalog - extracted) == [], "run scripts/catalog to drop texts the code no longer has"


def _calls_without_translation(tree: ast.AST, names: set[str]) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in names:
            first = node.args[0] if node.args else None
            if isinstance(first, (ast.Constant, ast.JoinedStr)) and isinstance(getattr(first, "value", ""), str):
                lines.append(node.lineno)
    return lines


def test_flashed_and_raised_messages_go_through_the_catalog():
    """flash("...") or a rule error built from a bare string would show English on a Korean page."""
    found = []
    errors = {"flash", "MailboxRuleError", "DomainRuleError", "DomainExists", "AliasRuleError", "RoleError",
              "SupportRefused", "InvalidSize", "InvalidAddress"}
    for path in (ROOT / "portal").rglob("*.py"):
        if "cli" in path.parts:
            continue  # command-line output stays English
        lines = _calls_without_translation(ast.parse(path.read_text()), errors)
        found += [f"{path.relative_to(ROOT)}:{line}" for line in lines]
    assert found == []


# Words that are the same in both languages: names of programs, protocols and units.
ALLOWED = {"imap", "smtp", "csv", "utc", "dovecot", "postfix", "sha512-crypt", "blf-crypt", "argon2id", "english",
           "mail", "portal", "cli", "gb", "mb", "kb", "tb", "ip", "id", "catch-all", "api",
           "list-id",  # a mail header's name, as mail programs show it
           # protocols and the authenticator apps a user may know by name
           "pop", "managesieve", "totp", "freeotp", "aegis", "google", "authenticator", "javascript"}


def english_left(page: str) -> list[str]:
    """Visible text of a page that still looks English: words of 3+ ASCII letters not allowed above."""
    body = re.sub(r"(?s)<(script|style)\b.*?</\1>", " ", page)
    body = re.sub(r"(?s)<[^>]+>", " ", body)
    attributes = re.findall(r'(?:aria-label|placeholder|title|alt)="([^"]*)"', page)
    text = html.unescape(" ".join([body, *attributes]))
    text = re.sub(r"https?://\S+", " ", text)  # addresses of pages
    text = re.sub(r"[\w.+'-]*@[\w.-]+", " ", text)  # addresses and catch-alls
    text = re.sub(r"\b[\w-]+(\.[\w-]+)+\b", " ", text)  # domain names, file names
    words = re.findall(r"[A-Za-z][A-Za-z-]{2,}", text)
    return sorted({w for w in words if w.lower() not in ALLOWED})


@pytest.fixture
def people(app, db):
    for address in ("user@ko.example", "root@ko.example", "help@ko.example"):
        make_mailbox(db, address, PASSWORD)
    runner = app.test_cli_runner()
    runner.invoke(args=["admin", "grant", "superadmin", "root@ko.example"])
    runner.invoke(args=["admin", "grant", "helpdesk", "help@ko.example"])
    db.execute("INSERT INTO virtual_aliases (domain_id, source, destination) SELECT id, 'team@ko.example',"
               " 'user@ko.example' FROM virtual_domains WHERE name = 'ko.example'")
    clients = {"anonymous": make_client(app)}
    for name in ("user", "root", "help"):
        clients[name] = make_client(app)
        clients[name].environ_base["HTTP_ACCEPT_LANGUAGE"] = "ko-KR,ko;q=0.9,en;q=0.5"
        assert sign_in(clients[name], f"{name}@ko.example", PASSWORD).status_code == 302
    clients["anonymous"].environ_base["HTTP_ACCEPT_LANGUAGE"] = "ko"
    return clients


URL_ARGS = {"name": "ko.example", "address": "user@ko.example", "source": "team@ko.example"}


def test_every_page_is_korean_for_a_korean_browser(app, people):
    leftovers = {}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in ("static", "favicon", "health.healthz", "admin.audit_csv"):
            continue
        if rule.endpoint.startswith("api."):  # JSON, not pages: its problems in Korean are in tests/test_api.py
            continue
        if not set(rule.arguments) <= set(URL_ARGS):
            continue
        url = rule.build({arg: URL_ARGS[arg] for arg in rule.arguments}, append_unknown=False)[1]
        for who in ("anonymous", "user", "root", "help"):
            response = people[who].get(url)
            if response.status_code >= 300 and response.status_code < 400:
                continue
            page = response.get_data(as_text=True)
            assert '<html lang="ko" ' in page, url
            words = english_left(page)
            if words:
                leftovers[f"{who} {url}"] = words
    assert leftovers == {}


def test_error_pages_and_form_errors_in_korean(people):
    page = people["user"].get("/no/such/page").get_data(as_text=True)
    assert '<html lang="ko" ' in page and english_left(page) == []
    client = people["anonymous"]
    response = client.post("/auth/login", data={"csrf_token": csrf_token(client, "/auth/login"), "address": "",
                                                "password": ""})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and english_left(page) == []


def test_the_colour_mode_switch_is_remembered_and_checked(app, db):
    client = make_client(app)
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'data-bs-theme="light" data-colour-mode="auto"' in page  # follows the device (static/colour-mode.js)
    assert '<script src="/static/colour-mode.js"></script>' in page
    token = csrf_token(client, "/auth/login")
    response = client.post("/auth/colour-mode", data={"csrf_token": token, "mode": "dark", "next": "/auth/login?x=1"})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login?x=1"
    assert "portal_colour_mode=dark" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    page = client.get("/auth/login").get_data(as_text=True)
    assert 'data-bs-theme="dark" data-colour-mode="dark"' in page
    assert re.search(r'value="dark"[^>]*aria-pressed="true"', page)
    assert re.search(r'value="light"[^>]*aria-pressed="false"', page)
    for bad in ({"mode": "purple"}, {"mode": ""}):
        assert client.post("/auth/colour-mode", data={"csrf_token": token, **bad}).status_code == 400
    assert client.post("/auth/colour-mode", data={"mode": "light"}).status_code == 400  # CSRF
    response = client.post("/auth/colour-mode", data={"csrf_token": token, "mode": "light",
                                                      "next": "https://evil.example/"})
    assert response.headers["Location"] == "/"
    client.set_cookie("portal_colour_mode", "<script>")
    assert 'data-colour-mode="auto"' in client.get("/auth/login").get_data(as_text=True)


def test_the_switch_is_remembered_and_checked(app, db):
    client = make_client(app)
    assert '<html lang="en" ' in client.get("/auth/login").get_data(as_text=True)
    token = csrf_token(client, "/auth/login")
    response = client.post("/auth/language", data={"csrf_token": token, "lang": "ko", "next": "/auth/login?x=1"})
    assert response.status_code == 302 and response.headers["Location"] == "/auth/login?x=1"
    assert "portal_lang=ko" in response.headers["Set-Cookie"] and "HttpOnly" in response.headers["Set-Cookie"]
    assert '<html lang="ko" ' in client.get("/auth/login").get_data(as_text=True)
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = "en"
    assert '<html lang="ko" ' in client.get("/auth/login").get_data(as_text=True)  # the choice wins
    for bad in ({"lang": "fr"}, {"lang": "ko", "next": "https://evil.example/"}):
        response = client.post("/auth/language", data={"csrf_token": token, **bad})
        assert response.status_code == 400 or response.headers["Location"] == "/"
    assert client.post("/auth/language", data={"lang": "en"}).status_code == 400  # CSRF
