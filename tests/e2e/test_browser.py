"""End to end in a real browser: the portal under gunicorn, PostgreSQL, Dovecot and Postfix on loopback.

English runs find fields and buttons by their labels and roles (so the labels must exist);
Korean runs navigate by URL and check structure, not wording.
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import time
import uuid
from datetime import date
from datetime import timedelta

import pytest
from imapclient.exceptions import LoginError
from playwright.sync_api import expect

from portal import sieve
from portal.access import Actor
from portal.rules import mail_rules
from tests.conftest import NOTICE_FROM
from tests.conftest import new_client_ip
from tests.e2e.conftest import PHONE
from tests.e2e.conftest import ROOT
from tests.e2e.conftest import axe_violations
from tests.e2e.conftest import html_lang
from tests.e2e.conftest import serious_findings
from tests.e2e.conftest import sign_in
from tests.mail import ManageSieve
from tests.mail import imap_login
from tests.mail import make_mailbox
from tests.mail import send_mail
from tests.mail import wait_for_maildir_message

PASSWORD = "a long enough test password 31"
NEW = "harbor quilt sparrow 58 meadow"


def grant(app, *args: str) -> None:
    result = app.test_cli_runner().invoke(args=["admin", "grant", *args])
    assert result.exit_code == 0, result.output


def assert_imap_accepts(mail_stack, address: str, password: str) -> None:
    imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip()).logout()


def assert_imap_refuses(mail_stack, address: str, password: str) -> None:
    with pytest.raises(LoginError, match="AUTHENTICATIONFAILED"):
        imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip())


def change_password_in_form(page, current: str, new: str) -> None:
    page.get_by_label("Current password").fill(current)
    page.get_by_label("New password", exact=True).fill(new)
    page.get_by_label("New password again").fill(new)
    page.get_by_role("button", name="Change password").click()


def subjects_in(maildir) -> list[str]:
    found = []
    for folder in ("new", "cur"):
        if (maildir / folder).is_dir():
            found += [email.message_from_bytes(p.read_bytes())["Subject"] for p in (maildir / folder).iterdir()]
    return found


def test_password_change_in_the_browser_works_over_imap(db, mail_stack, portal_url, page, screenshot):
    address = "alice@pw.example"
    make_mailbox(db, address, PASSWORD)

    sign_in(page, address, PASSWORD)
    expect(page).to_have_url(f"{portal_url}/")
    expect(page.get_by_role("heading", name="Your mailbox")).to_be_visible()
    page.get_by_role("link", name="Password", exact=True).click()
    expect(page).to_have_url(f"{portal_url}/account/password")
    change_password_in_form(page, PASSWORD, NEW)

    expect(page).to_have_url(f"{portal_url}/")
    expect(page.get_by_role("status")).to_contain_text("Your password has been changed")
    screenshot(page, "flow-password-changed")
    assert_imap_accepts(mail_stack, address, NEW)
    assert_imap_refuses(mail_stack, address, PASSWORD)


def test_forwarding_set_in_the_browser_is_followed_by_postfix(db, mail_stack, portal_url, page):
    source, destination = "fwd@fw.example", "dest@fw.example"
    make_mailbox(db, source, PASSWORD)
    make_mailbox(db, destination, PASSWORD)

    sign_in(page, source, PASSWORD)
    page.get_by_role("link", name="Forwarding", exact=True).click()
    expect(page).to_have_url(f"{portal_url}/account/forwarding")
    page.get_by_label("Forward my mail to").fill(destination)
    page.get_by_label("Also keep a copy in my mailbox").uncheck()
    page.get_by_role("button", name="Save forwarding").click()

    expect(page.get_by_role("status")).to_contain_text("Forwarding saved")
    now = page.get_by_role("region", name="Where your mail goes now")
    expect(now).to_contain_text("is forwarded to the addresses below only")
    expect(now.get_by_role("listitem")).to_have_text([destination])

    subject = f"forwarded {uuid.uuid4()}"
    send_mail(mail_stack.smtp_port, source, subject)
    message = wait_for_maildir_message(mail_stack.mail_root / "fw.example" / "dest", subject)
    assert message["To"] == source
    assert subject not in subjects_in(mail_stack.mail_root / "fw.example" / "fwd")  # no copy kept


def test_storage_page_shows_the_limit_and_what_dovecot_counted(app, db, mail_stack, portal_url, page):
    address = "store@quota.example"
    make_mailbox(db, address, PASSWORD)
    result = app.test_cli_runner().invoke(args=["mailbox", "set-quota", address, "50 MB"])
    assert result.exit_code == 0, result.output
    subject = f"counted {uuid.uuid4()}"
    send_mail(mail_stack.smtp_port, address, subject, body="x" * 2000)
    wait_for_maildir_message(mail_stack.mail_root / "quota.example" / "store", subject)
    deadline = time.monotonic() + 10  # Dovecot's quota_clone writes the figures after the delivery
    while not db.execute("SELECT 1 FROM portal_quota_usage WHERE email = %s AND messages = 1", (address,)).fetchone():
        assert time.monotonic() < deadline, "Dovecot did not report the usage"
        time.sleep(0.1)

    sign_in(page, address, PASSWORD)
    page.get_by_role("link", name="Storage", exact=True).click()
    expect(page).to_have_url(f"{portal_url}/account/storage")
    expect(page.get_by_role("heading", name="Storage")).to_be_visible()
    figures = page.locator(".usage-figures")
    expect(figures).to_contain_text(re.compile(r"\d+(\.\d)? KB of 50 MB used \(0\s%\), 1 message\."))
    meter = page.get_by_role("meter", name=re.compile("Storage used"))
    expect(meter).to_have_attribute("max", str(50 * 1024 * 1024))
    assert 2000 < int(meter.get_attribute("value")) < 10_000


def test_superadmin_creates_domain_mailbox_and_alias(app, db, mail_stack, portal_url, page, screenshot):
    make_mailbox(db, "root@ops.example", PASSWORD)
    grant(app, "superadmin", "root@ops.example")

    sign_in(page, "root@ops.example", PASSWORD)
    page.get_by_role("navigation", name="Account").get_by_role("link", name="Administration").click()
    expect(page).to_have_url(f"{portal_url}/admin/")
    page.get_by_role("link", name="New domain").click()
    page.get_by_label("Domain name").fill("new.example")
    page.get_by_role("button", name="Create domain").click()

    expect(page).to_have_url(f"{portal_url}/admin/domains/new.example/mailboxes")
    expect(page.get_by_role("status")).to_contain_text("new.example is created")
    page.get_by_role("link", name="New mailbox").click()
    page.get_by_label("Address", exact=True).fill("carol")
    page.get_by_label("Name", exact=True).fill("Carol Example")
    page.get_by_label("Generate a password (shown once)").check()
    page.get_by_label("The owner chose this password: mail clients may use it at once").check()
    page.get_by_role("button", name="Create mailbox").click()

    expect(page.get_by_role("heading", name="Mailbox created")).to_be_visible()
    generated = page.locator("main code").inner_text().strip()
    assert len(generated) >= 16
    screenshot(page, "flow-mailbox-created")
    assert_imap_accepts(mail_stack, "carol@new.example", generated)

    page.get_by_role("link", name="Back to the mailboxes of new.example").click()
    expect(page.get_by_role("row", name=re.compile("carol@new.example"))).to_contain_text("Carol Example")
    page.get_by_role("link", name="Aliases of new.example").click()
    page.get_by_role("link", name="New alias").click()
    page.get_by_label("Address", exact=True).fill("sales")
    page.get_by_label("Delivers to").fill("carol@new.example")
    page.get_by_role("button", name="Create alias").click()

    expect(page).to_have_url(f"{portal_url}/admin/domains/new.example/aliases")
    expect(page.get_by_role("row", name=re.compile("sales@new.example"))).to_contain_text("carol@new.example")

    rows = db.execute("SELECT source, destination FROM virtual_aliases").fetchall()
    assert [(r["source"], r["destination"]) for r in rows] == [("sales@new.example", "carol@new.example")]
    actions = [r["action"] for r in db.execute("SELECT action FROM portal_audit_log WHERE actor = 'root@ops.example'"
                                               " ORDER BY id")]
    assert actions == ["domain.create", "mailbox.create", "alias.create"]
    # And the mail server agrees: mail to the new alias lands in the new mailbox.
    subject = f"to sales {uuid.uuid4()}"
    send_mail(mail_stack.smtp_port, "sales@new.example", subject)
    wait_for_maildir_message(mail_stack.mail_root / "new.example" / "carol", subject)


def test_helpdesk_reset_then_forced_password_change(app, db, mail_stack, portal_url, new_context, screenshot):
    user, user_password = "user@desk.example", "the user's own password 31"
    make_mailbox(db, "help@desk.example", PASSWORD)
    make_mailbox(db, user, user_password)
    grant(app, "helpdesk", "help@desk.example", "desk.example")

    before = new_context().new_page()
    sign_in(before, user, user_password)

    helper = new_context().new_page()
    sign_in(helper, "help@desk.example", PASSWORD)
    helper.get_by_role("navigation", name="Account").get_by_role("link", name="Helpdesk").click()
    helper.get_by_role("link", name=user).click()
    expect(helper).to_have_url(f"{portal_url}/helpdesk/mailboxes/{user}")
    helper.get_by_role("button", name="Reset the password").click()
    expect(helper.get_by_role("heading", name=f"New password for {user}")).to_be_visible()
    temporary = helper.locator("p.secret code").inner_text().strip()
    assert re.fullmatch(r"[a-z2-9]{5}(-[a-z2-9]{5}){3}", temporary)
    screenshot(helper, "flow-helpdesk-reset")

    before.reload()  # the user's open session ended with the reset
    expect(before).to_have_url(re.compile(r"/auth/login"))

    page = new_context().new_page()
    sign_in(page, user, temporary)
    expect(page).to_have_url(f"{portal_url}/account/password")
    expect(page.get_by_role("status").filter(has_text="Your password was reset")).to_be_visible()
    for elsewhere in ("/", "/account/forwarding", "/account/storage"):
        page.goto(elsewhere)
        expect(page).to_have_url(f"{portal_url}/account/password")
    change_password_in_form(page, temporary, NEW)

    expect(page).to_have_url(f"{portal_url}/")
    page.goto("/account/forwarding")
    expect(page).to_have_url(f"{portal_url}/account/forwarding")
    assert_imap_accepts(mail_stack, user, NEW)
    assert_imap_refuses(mail_stack, user, temporary)


def test_language_switch_and_accept_language(db, portal_url, new_context):
    address = "lang@i18n.example"
    make_mailbox(db, address, PASSWORD)
    page = new_context(locale="en-US").new_page()
    html = page.locator("html")

    page.goto("/auth/login")
    expect(html).to_have_attribute("lang", "en")
    switch = page.locator("form.language-switch")
    expect(switch.get_by_role("button", name="English")).to_have_attribute("aria-current", "true")
    switch.get_by_role("button", name="한국어").click()
    expect(html).to_have_attribute("lang", "ko")
    expect(page).to_have_url(f"{portal_url}/auth/login")
    expect(page.locator("form.language-switch button[value=ko]")).to_have_attribute("aria-current", "true")

    sign_in(page, address, PASSWORD, by_label=False)
    expect(html).to_have_attribute("lang", "ko")
    page.goto("/account/storage")
    expect(html).to_have_attribute("lang", "ko")
    page.goto("/account/forwarding?from=test")
    expect(html).to_have_attribute("lang", "ko")

    page.locator("form.language-switch button[value=en]").click()
    expect(html).to_have_attribute("lang", "en")
    expect(page).to_have_url(f"{portal_url}/account/forwarding?from=test")
    page.goto("/account/storage")
    expect(html).to_have_attribute("lang", "en")

    korean = new_context(locale="ko-KR").new_page()
    korean.goto("/auth/login")
    expect(korean.locator("html")).to_have_attribute("lang", "ko")
    expect(korean.locator("form.language-switch button[value=ko]")).to_have_attribute("aria-current", "true")


def test_api_token_made_in_the_browser_provisions_then_is_revoked(app, db, mail_stack, portal_url, page, screenshot):
    import urllib.error
    import urllib.request

    make_mailbox(db, "admin@school.example", PASSWORD)
    grant(app, "domain-admin", "admin@school.example", "school.example")
    sign_in(page, "admin@school.example", PASSWORD)
    page.get_by_role("navigation", name="Account").get_by_role("link", name="API tokens").click()
    page.get_by_label("Name").fill("student records")
    page.get_by_label("Only these domains").fill("school.example")
    page.get_by_role("button", name="Make token").click()
    expect(page.get_by_role("heading", name="Your new token")).to_be_visible()
    token = page.locator("#new-token").inner_text().strip()
    screenshot(page, "flow-api-token-shown-once")

    def call(method: str, path: str, body: dict | None = None):
        request = urllib.request.Request(f"{portal_url}/api/v1{path}", method=method,  # noqa: S310 - loopback
                                         data=json.dumps(body).encode() if body is not None else None,
                                         headers={"Authorization": f"Bearer {token}",
                                                  "Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
                return response.status, json.loads(response.read() or b"null")
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    status, created = call("POST", "/domains/school.example/mailboxes", {"local_part": "pupil"})
    assert status == 201 and created["address"] == "pupil@school.example"
    status, _alias = call("POST", "/domains/school.example/aliases",
                          {"address": "class@school.example", "destinations": ["pupil@school.example"]})
    assert status == 201
    subject = f"to the class {uuid.uuid4()}"
    send_mail(mail_stack.smtp_port, "class@school.example", subject)
    wait_for_maildir_message(mail_stack.mail_root / "school.example" / "pupil", subject)

    page.goto("/account/api-tokens")  # the list now says when and from where the token was last used
    expect(page.get_by_role("row", name=re.compile("student records"))).to_contain_text("127.0.0.1")
    page.get_by_role("button", name="Revoke student records").click()
    expect(page.get_by_role("status")).to_contain_text("The token is revoked")
    screenshot(page, "flow-api-token-revoked")
    status, problem = call("GET", "/me")
    assert status == 401 and problem["status"] == 401


DESKTOP = {"width": 1280, "height": 720}


def test_on_a_phone_the_menu_opens_and_the_colour_mode_follows_the_device(db, app, new_context, screenshot):
    root = "root@phone.example"
    make_mailbox(db, root, PASSWORD)
    grant(app, "superadmin", root)
    page = new_context(viewport=PHONE, color_scheme="dark").new_page()
    page.goto("/auth/login")
    html = page.locator("html")
    expect(html).to_have_attribute("data-colour-mode", "auto")
    expect(html).to_have_attribute("data-bs-theme", "dark")  # "System", on a device set to dark
    page.emulate_media(color_scheme="light")
    expect(html).to_have_attribute("data-bs-theme", "light")  # and it follows a change without a reload

    page.set_viewport_size(DESKTOP)
    sign_in(page, root, PASSWORD)
    page.set_viewport_size(PHONE)
    menu = page.get_by_role("button", name="Menu")
    administration = page.get_by_role("link", name="Administration")
    expect(menu).to_be_visible()
    expect(administration).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(administration).to_be_visible()
    expect(page.locator("#site-menu")).to_have_class(re.compile(r"\bshow\b"))  # opened, not still opening
    expect(page.get_by_role("button", name="Sign out")).to_be_visible()
    expect(page.locator("form.language-switch")).to_be_visible()
    # Tables are stacked cards here, each cell labelled with its column's heading.
    history = page.locator("table.data").first
    expect(history).to_have_class(re.compile(r"\bstacks\b"))
    expect(history.locator("td").first).to_have_attribute("data-label", "When (UTC)")
    assert history.locator("td").first.evaluate("cell => getComputedStyle(cell).display") == "grid"
    screenshot(page, "phone-menu-open")
    page.locator("form.colour-switch button[value=dark]").click()
    expect(html).to_have_attribute("data-bs-theme", "dark")
    expect(html).to_have_attribute("data-colour-mode", "dark")
    page.emulate_media(color_scheme="light")
    page.reload()
    expect(html).to_have_attribute("data-bs-theme", "dark")  # a choice wins over the device
    expect(administration).to_be_hidden()  # a new page starts with the menu closed
    menu.click()
    administration.click()
    expect(page).to_have_url(re.compile(r"/admin/$"))
    # The page is no wider than the phone: nothing makes the reader scroll sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_bulk_disable_from_the_list_after_a_review(app, db, mail_stack, new_context, screenshot, lang):
    """Select two mailboxes, disable them behind the review page; Dovecot refuses them, the third is untouched.
    The review page passes axe, in both colour modes."""
    root = "root@bulk.example"
    for address in (root, "ann@bulk.example", "ben@bulk.example", "cat@bulk.example"):
        make_mailbox(db, address, PASSWORD)
    grant(app, "superadmin", root)
    page = new_context(locale="en-US" if lang == "en" else "ko-KR").new_page()
    sign_in(page, root, PASSWORD, by_label=lang == "en")
    findings = []
    # The review page in both colour modes (the mode is switched on the list: the review answers a POST).
    for mode in ("light", "dark"):
        page.goto("/admin/domains/bulk.example/mailboxes")
        page.locator(f"form.colour-switch button[value={mode}]").click()
        expect(page.locator("html")).to_have_attribute("data-bs-theme", mode)
        for address in ("ann@bulk.example", "ben@bulk.example"):
            page.locator(f"input[name=mailbox][value='{address}']").check()
        page.locator("select[name=action]").select_option("disable")
        page.locator(".bulk-actions button[type=submit]").click()
        review = page.locator("table.data")
        expect(review).to_contain_text("ann@bulk.example")
        expect(review).not_to_contain_text("cat@bulk.example")
        assert html_lang(page) == lang
        findings += serious_findings(axe_violations(page))
        prefix = "" if mode == "light" else "dark-"
        screenshot(page, f"{prefix}bulk-review", lang)
        page.set_viewport_size(PHONE)
        screenshot(page, f"{prefix}phone-bulk-review", lang)
        page.set_viewport_size(DESKTOP)
    assert not findings, findings
    page.locator("form[action$='/bulk'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/admin/domains/bulk\.example/mailboxes$"))
    expect(page.locator(".flash").first).to_be_visible()
    for address in ("ann@bulk.example", "ben@bulk.example"):
        assert_imap_refuses(mail_stack, address, PASSWORD)
    assert_imap_accepts(mail_stack, "cat@bulk.example", PASSWORD)
    # The overview counts them, and its figure leads to the list of exactly those.
    page.goto("/admin/")
    disabled = page.locator("li.figure a[href$='state=disabled']")
    expect(disabled.locator(".figure-count")).to_have_text("2")
    disabled.click()  # one domain on this server: straight to its list, narrowed
    expect(page).to_have_url(re.compile(r"/admin/domains/bulk\.example/mailboxes\?state=disabled$"))
    listed = page.locator("input[name=mailbox]")
    expect(listed).to_have_count(2)
    screenshot(page, "mailboxes-disabled", lang)


# (name, path, expected status) of every main page, as a superadmin (who also sees the helpdesk) sees it.
A11Y_PAGES = [
    ("dashboard", "/", 200),
    ("password", "/account/password", 200),
    ("forwarding", "/account/forwarding", 200),
    ("storage", "/account/storage", 200),
    ("admin-index", "/admin/", 200),
    ("domains", "/admin/domains", 200),
    ("mailboxes", "/admin/domains/a11y.example/mailboxes", 200),
    ("mailboxes-over-80", "/admin/domains/a11y.example/mailboxes?state=over-80", 200),
    ("domains-over-80", "/admin/domains?state=over-80", 200),
    ("removals", "/admin/removals", 200),
    ("new-mailbox", "/admin/domains/a11y.example/mailboxes/new", 200),
    ("aliases", "/admin/domains/a11y.example/aliases", 200),
    ("alias", "/admin/domains/a11y.example/aliases/info@a11y.example", 200),
    ("domain-settings", "/admin/domains/a11y.example/settings", 200),
    ("unlink-alias-domain", "/admin/domains/a11y.example/alias-domains/a11y.test/delete", 200),
    ("roles", "/admin/roles", 200),
    ("audit-log", "/admin/audit", 200),
    ("helpdesk", "/helpdesk/", 200),
    ("helpdesk-mailbox", "/helpdesk/mailboxes/alice@a11y.example", 200),
    ("api-tokens", "/account/api-tokens", 200),
    ("vacation", "/account/vacation", 200),
    ("filters", "/account/filters", 200),
    ("helpdesk-vacation", "/helpdesk/mailboxes/alice@a11y.example/vacation", 200),
    ("recovery", "/account/recovery", 200),
    ("helpdesk-recovery", "/helpdesk/recovery", 200),
    ("two-step", "/account/security", 200),
    ("app-passwords", "/account/app-passwords", 200),
    ("error-404", "/no/such/page", 404),
]


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_main_pages_have_no_serious_accessibility_problems(app, db, mail_stack, new_context, screenshot, lang):
    root, alice = "root@a11y.example", "alice@a11y.example"
    make_mailbox(db, root, PASSWORD)
    make_mailbox(db, alice, PASSWORD)
    make_mailbox(db, "bob@a11y.example", PASSWORD)
    grant(app, "superadmin", root)
    runner = app.test_cli_runner()
    make_mailbox(db, "gone@a11y.example", PASSWORD)
    for args in (["mailbox", "set-quota", root, "200 MB"], ["alias", "add", "info@a11y.example", alice, root],
                 # A deleted mailbox waiting for its purge, for the overview and its list.
                 ["mailbox", "delete", "gone@a11y.example", "--yes"],
                 # An alias domain and a send-as right, so their parts of the pages are checked too.
                 ["alias-domain", "add", "a11y.test", "a11y.example"],
                 ["send-as", "grant", alice, "info@a11y.example"]):
        result = runner.invoke(args=args)
        assert result.exit_code == 0, result.output
    # Real mail in the inbox, so the storage page's folder table is there to be checked; then a usage
    # figure that fills 85 % of the bar (written over what Dovecot reported for that mail): the overview's
    # "over 80 %" figure and list then have a mailbox to show.
    send_mail(mail_stack.smtp_port, root, "for the folder list", body="z" * 3000)
    wait_for_maildir_message(mail_stack.mail_root / "a11y.example" / "root", "for the folder list")
    deadline = time.monotonic() + 10
    while not db.execute("SELECT 1 FROM portal_quota_usage WHERE email = %s", (root,)).fetchone():
        assert time.monotonic() < deadline, "Dovecot did not report the usage"
        time.sleep(0.1)
    db.execute("UPDATE portal_quota_usage SET bytes = %s, messages = 12 WHERE email = %s", (170 * 1024**2, root))
    # A reply and filters of the superadmin's own, so their pages show them in words; a reply the helpdesk
    # set for alice, so hers says so.
    with app.app_context():
        root_id = db.execute("SELECT id FROM virtual_users WHERE email = %s", (root,)).fetchone()["id"]
        owner = Actor(root, "192.0.2.9", root_id)
        mail_rules.save_vacation(db, owner, sieve.Vacation(True, "Away", "Back soon.", None,
                                                           date.today() + timedelta(days=7), 7, ()),
                                 config=app.config, today=date.today())
        mail_rules.save_filters(db, owner, [
            {"field": "from", "match": "contains", "value": "news", "action": "fileinto", "argument": "News"},
            {"field": "list-id", "match": "contains", "value": "dev", "action": "seen", "argument": ""}],
            config=app.config, max_destinations=10, delimiter="+")
        alice_row = db.execute("SELECT id, email FROM virtual_users WHERE email = %s", (alice,)).fetchone()
        mail_rules.save_vacation_of(db, owner, alice_row, sieve.Vacation(True, "On leave", "Alice is away.", None,
                                                                         None, 7, ()),
                                    config=app.config, today=date.today())

    page = new_context(locale="en-US").new_page()
    findings, everything = [], {}

    def check(name: str, response=None, status: int = 200, shot: str | None = None) -> None:
        if response is not None:
            assert response.status == status, f"{name}: {page.url} answered {response.status}"
        assert html_lang(page) == lang, f"{name}: <html lang> is {html_lang(page)!r}, not {lang!r}"
        violations = axe_violations(page)
        everything[name] = [{"rule": v["id"], "impact": v["impact"], "targets": [n["target"] for n in v["nodes"]]}
                            for v in violations]
        findings.extend({"page": name, **row} for row in serious_findings(violations))
        screenshot(page, shot or name, lang)

    def also_at(size: dict, shot: str) -> None:
        """A screenshot of the page at another size (axe has checked it at one)."""
        before = page.viewport_size
        page.set_viewport_size(size)
        screenshot(page, shot, lang)
        page.set_viewport_size(before)

    page.goto("/auth/login")
    if lang != "en":
        page.locator(f"form.language-switch button[value={lang}]").click()
        expect(page.locator("html")).to_have_attribute("lang", lang)
    check("sign-in")
    also_at(PHONE, "phone-sign-in")

    sign_in(page, root, PASSWORD, by_label=lang == "en")
    # axe on every page twice: on a desktop in light mode, then on a phone in dark mode. Screenshots of
    # all four: light and dark, desktop and phone.
    for mode, size in (("light", DESKTOP), ("dark", PHONE)):
        page.set_viewport_size(DESKTOP)
        page.locator(f"form.colour-switch button[value={mode}]").click()
        expect(page.locator("html")).to_have_attribute("data-bs-theme", mode)
        page.set_viewport_size(size)
        for name, path, status in A11Y_PAGES:
            if mode == "light":
                check(name, page.goto(path), status)
                also_at(PHONE, f"phone-{name}")
            else:
                check(f"dark-phone-{name}", page.goto(path), status)
                also_at(DESKTOP, f"dark-{name}")

    report = ROOT / "artifacts" / "axe" / f"{lang}.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(everything, indent=2, ensure_ascii=False))
    assert not findings, f"axe found {len(findings)} serious/critical problem(s) in {lang}:\n" + "\n".join(
        f"  [{f['impact']}] {f['rule']} on {f['page']}: {f['target']}  {f['html']}  -- {f['summary']}"
        for f in findings)


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_out_of_office_and_a_filter_set_in_the_browser(app, db, mail_stack, new_context, screenshot, lang):
    """Alice switches her reply on and files her boss's mail, on the pages; bob gets the reply through Postfix,
    the boss's message lands in the new folder. A program's own active filters are shown and kept."""
    domain = f"ooo-{lang}.example"
    alice, bob, carol = f"alice@{domain}", f"bob@{domain}", f"carol@{domain}"
    for address in (alice, bob, carol):
        make_mailbox(db, address, PASSWORD)
    page = new_context(locale="en-US" if lang == "en" else "ko-KR").new_page()
    sign_in(page, alice, PASSWORD, by_label=lang == "en")
    page.locator("#vacation-heading a").click()
    expect(page).to_have_url(re.compile(r"/account/vacation$"))
    # Text that would end the Sieve string and add commands if it were not escaped: it arrives as typed.
    subject = ('Away "until" Friday"; discard; \\ ${x}' if lang == "en"
               else '금요일까지 부재중 "입니다"; discard; \\')
    body = "I am away.\nUrgent: info@example.com" if lang == "en" else "휴가 중입니다.\n급한 일은 전화 주세요."
    last = (date.today() + timedelta(days=4)).isoformat()
    if lang == "en":
        page.get_by_label("Send an out-of-office reply").check()
        page.get_by_label("Subject").fill(subject)
        page.get_by_label("Message").fill(body)
        page.get_by_label("Last day (optional)").fill(last)
        page.get_by_role("button", name="Save the reply").click()
    else:
        page.locator("input[name=enabled]").check()
        page.locator("input[name=subject]").fill(subject)
        page.locator("textarea[name=body]").fill(body)
        page.locator("input[name=last_day]").fill(last)
        page.locator("form[action$='/account/vacation'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/account/vacation$"))
    expect(page.locator(".flash").first).to_be_visible()
    expect(page.locator(".state-on")).to_contain_text(last)
    screenshot(page, "flow-vacation-on", lang)

    page.goto("/account/filters")
    page.locator("input[name='rows-0-value']").fill("boss")
    page.locator("select[name='rows-0-action']").select_option("fileinto")
    page.locator("input[name='rows-0-argument']").fill("Boss" if lang == "en" else "상사")
    page.locator("form[action$='/account/filters'] button[type=submit]").click()
    expect(page.locator(".filter-list li")).to_have_count(1)
    screenshot(page, "flow-filters-saved", lang)

    def replies_to(name: str) -> list:
        return [m for m in (email.message_from_bytes(p.read_bytes(), policy=email.policy.default)
                            for sub in ("new", "cur") for p in (mail_stack.mail_root / domain / name / sub).glob("*"))
                if m["Auto-Submitted"]]

    send_mail(mail_stack.smtp_port, alice, "are you in?", sender=bob)
    deadline = time.monotonic() + 15
    while not replies_to("bob") and time.monotonic() < deadline:
        time.sleep(0.1)
    # Pigeonhole folds a long encoded subject at a space and writes the fold as a tab (a subject typed
    # on the page cannot hold a tab: the rule refuses control characters).
    assert [str(m["Subject"]).replace("\t", " ") for m in replies_to("bob")] == [subject]
    assert replies_to("bob")[0].get_content().replace("\r\n", "\n").strip() == body
    # A mailing list's message gets no reply (carol would receive it).
    send_mail(mail_stack.smtp_port, alice, "list post", body="to the list", sender=carol,
              headers={"List-Id": "<x.example>"})
    wait_for_maildir_message(mail_stack.mail_root / domain / "alice", "list post")
    send_mail(mail_stack.smtp_port, alice, "quarterly plan", sender="the.boss@remote.invalid")
    folder = "Boss" if lang == "en" else "상사"
    client = imap_login(mail_stack.imap_port, alice, PASSWORD, client_ip=new_client_ip())
    try:
        deadline = time.monotonic() + 15
        while not client.folder_exists(folder):
            assert time.monotonic() < deadline, "the filter made no folder"
            time.sleep(0.1)
        client.select_folder(folder, readonly=True)
        while not client.search("ALL"):
            assert time.monotonic() < deadline, "nothing filed"
            time.sleep(0.1)
            client.noop()
    finally:
        client.logout()
    assert replies_to("carol") == []

    # Another program activates its own filters: the page shows them and asks before saving.
    other = ManageSieve(mail_stack.managesieve_port, alice, PASSWORD)
    try:
        other.put("roundcube", 'require "fileinto";\nif header :contains "subject" "[x]" { fileinto "INBOX"; }\n')
    finally:
        other.close()
    page.goto("/account/filters")
    page.locator("form[action$='/account/filters'] button[type=submit]").click()
    expect(page.locator(".other-script pre")).to_contain_text('header :contains "subject" "[x]"')
    findings = serious_findings(axe_violations(page))
    screenshot(page, "flow-filters-other-program", lang)
    page.locator("input[name=choice][value=keep]").check()
    page.locator("form[action$='/account/filters'] button[type=submit]").click()
    expect(page.locator(".flash").first).to_be_visible()
    assert not findings, findings


def _portal_mail(mail_stack, address: str, password: str, subject_part: str, seconds: float = 20):
    """The portal's message to ``address`` whose subject holds ``subject_part``, read over IMAP."""
    deadline = time.monotonic() + seconds
    while True:
        client = imap_login(mail_stack.imap_port, address, password, client_ip=new_client_ip())
        try:
            client.select_folder("INBOX", readonly=True)
            uids = client.search(["FROM", NOTICE_FROM])
            found = [email.message_from_bytes(data[b"BODY[]"], policy=email.policy.default)
                     for data in (client.fetch(uids, ["BODY.PEEK[]"]) if uids else {}).values()]
        finally:
            client.logout()
        found = [m for m in found if subject_part in str(m["Subject"])]
        if found:
            return found[-1]
        assert time.monotonic() < deadline, f"no {subject_part!r} for {address}"
        time.sleep(0.2)


def _link(message, portal_url: str) -> str:
    text = message.get_body(("plain",)).get_content()
    url = re.search(r"(http://\S+)", text).group(1)
    assert url.startswith(portal_url + "/")
    return url


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_a_forgotten_password_is_reset_in_the_browser(app, db, mail_stack, portal_url, new_context, screenshot,
                                                      lang):
    """Alice sets a recovery address, confirms it from the link, forgets her password, asks for a link on the
    sign-in page and chooses a new password through it: IMAP takes the new one and refuses the old one."""
    domain = f"rec-{lang}.example"
    alice, carol = f"alice@{domain}", f"carol@other-{lang}.example"
    make_mailbox(db, alice, PASSWORD)
    make_mailbox(db, carol, PASSWORD)
    locale = "en-US" if lang == "en" else "ko-KR"
    page = new_context(locale=locale).new_page()
    sign_in(page, alice, PASSWORD, by_label=lang == "en")
    page.goto("/account/recovery")
    if lang == "en":
        page.get_by_label("Recovery address").fill(carol)
        page.get_by_label("Current password").fill(PASSWORD)
        page.get_by_role("button", name="Save").click()
    else:
        page.locator("input[name=address]").fill(carol)
        page.locator("input[name=current_password]").fill(PASSWORD)
        page.locator("form[action$='/account/recovery'] button[type=submit]").click()
    expect(page.locator(".flash").first).to_contain_text(carol)
    screenshot(page, "flow-recovery-link-sent", lang)
    confirm = _portal_mail(mail_stack, carol, PASSWORD, "Confirm" if lang == "en" else "복구 주소 확인")
    assert confirm["Content-Language"] == lang
    page.goto(_link(confirm, portal_url))
    page.locator("form[action$='/auth/verify-recovery'] button[type=submit]").click()
    expect(page.locator(".flash-success")).to_contain_text(carol)

    stranger = new_context(locale=locale).new_page()
    stranger.goto("/auth/login")
    stranger.locator("a[href$='/auth/forgot']").click()
    findings = serious_findings(axe_violations(stranger))
    screenshot(stranger, "forgot", lang)
    stranger.locator("input[name=address]").fill(alice)
    stranger.locator("form[action$='/auth/forgot'] button[type=submit]").click()
    heading = "Check your recovery address" if lang == "en" else "복구 주소를 확인하세요"
    expect(stranger.locator("h1")).to_have_text(heading)
    findings += serious_findings(axe_violations(stranger))
    screenshot(stranger, "forgot-sent", lang)

    reset = _portal_mail(mail_stack, carol, PASSWORD, alice if lang == "en" else "새 비밀번호")
    stranger.goto(_link(reset, portal_url))
    expect(stranger).to_have_url(re.compile(r"/auth/recover$"))  # the token left the address bar
    findings += serious_findings(axe_violations(stranger))
    screenshot(stranger, "recover", lang)
    stranger.locator("input[name=new_password]").fill(NEW)
    stranger.locator("input[name=confirm_password]").fill(NEW)
    stranger.locator("form[action$='/auth/recover'] button[type=submit]").click()
    expect(stranger).to_have_url(re.compile(r"/auth/login$"))
    expect(stranger.locator(".flash-success")).to_be_visible()
    assert findings == []

    assert_imap_accepts(mail_stack, alice, NEW)
    assert_imap_refuses(mail_stack, alice, PASSWORD)
    page.goto("/")  # alice's old session ended with the reset
    expect(page).to_have_url(re.compile(r"/auth/login"))
    sign_in(stranger, alice, NEW, by_label=lang == "en")
    expect(stranger).to_have_url(re.compile(r"/$"))
    notice = _portal_mail(mail_stack, alice, NEW, alice)
    assert notice["Content-Language"] == lang
    # The link works once.
    again = new_context(locale=locale).new_page()
    again.goto(_link(reset, portal_url))
    expect(again.locator(".flash-error")).to_be_visible()
