"""Two-step sign-in and app passwords in headless Chromium, against the real stack.

TOTP: enrolled by scanning nothing (the key under the QR code), signed in with a code, and with a recovery code
once. Passkeys: made and used by Chromium's virtual authenticator (DevTools WebAuthn domain) on
http://localhost, which WebAuthn accepts as a secure origin (an IP address is no relying party).
"""

from __future__ import annotations

import re
import time

import pyotp
import pytest
from playwright.sync_api import expect

from tests.e2e.conftest import ROOT
from tests.e2e.conftest import axe_violations
from tests.e2e.conftest import serious_findings
from tests.e2e.conftest import serve
from tests.e2e.conftest import sign_in
from tests.e2e.test_browser import assert_imap_accepts
from tests.e2e.test_browser import assert_imap_refuses
from tests.mail import make_mailbox

PASSWORD = "a long enough test password 77"


@pytest.fixture(scope="module")
def localhost_url(mail_stack, database_url):
    """The portal again, its public address on http://localhost (a relying party WebAuthn accepts)."""
    yield from serve(mail_stack, database_url, host="localhost",
                     log_path=ROOT / "artifacts" / "e2e-gunicorn-localhost.log")


def second_step(page, code: str) -> None:
    page.locator("input[name=code]").fill(code)
    page.locator("form[action$='/auth/second-factor'] button[type=submit]").click()


@pytest.mark.parametrize("lang", ["en", "ko"])
def test_totp_app_passwords_and_recovery_codes_in_the_browser(db, mail_stack, new_context, screenshot, lang):
    alice = f"alice@two-step-{lang}.example"
    make_mailbox(db, alice, PASSWORD)
    locale = "en-US" if lang == "en" else "ko-KR"
    page = new_context(locale=locale).new_page()
    sign_in(page, alice, PASSWORD, by_label=lang == "en")
    page.goto("/account/security")
    findings = serious_findings(axe_violations(page))
    screenshot(page, "two-step", lang)
    page.locator("form[action$='/account/security/totp/start'] button[type=submit]").click()
    expect(page).to_have_url(re.compile(r"/account/security/totp$"))
    expect(page.locator("svg.qr-code")).to_be_visible()
    findings += serious_findings(axe_violations(page))
    screenshot(page, "two-step-qr", lang)
    secret = page.locator("#totp-secret").inner_text()
    page.locator("input[name=code]").fill(pyotp.TOTP(secret).now())
    page.locator("input[name=current_password]").fill(PASSWORD)
    page.locator("form[action$='/account/security/totp'] button[type=submit]").click()
    codes = page.locator("#recovery-codes code").all_inner_texts()
    assert len(codes) == 10
    findings += serious_findings(axe_violations(page))
    screenshot(page, "two-step-recovery-codes", lang)

    # Enrolling kept mail programs off the main password: IMAP refuses it, an app password works.
    assert_imap_refuses(mail_stack, alice, PASSWORD)
    page.goto("/account/app-passwords")
    page.locator("input[name=name]").fill("phone")
    page.locator("input[name=current_password]").fill(PASSWORD)
    page.locator("form[action$='/account/app-passwords'] button[type=submit]").click()
    app_password = page.locator("#new-app-password").inner_text()
    findings += serious_findings(axe_violations(page))
    screenshot(page, "app-passwords", lang)
    assert_imap_accepts(mail_stack, alice, app_password)

    # The password alone reaches only the second step.
    stranger = new_context(locale=locale).new_page()
    sign_in(stranger, alice, PASSWORD, by_label=lang == "en")
    expect(stranger).to_have_url(re.compile(r"/auth/second-factor$"))
    findings += serious_findings(axe_violations(stranger))
    screenshot(stranger, "second-step", lang)
    stranger.goto("/account/forwarding")
    expect(stranger).to_have_url(re.compile(r"/auth/login"))
    sign_in(stranger, alice, PASSWORD, by_label=lang == "en")
    second_step(stranger, pyotp.TOTP(secret).at(time.time() + 30))  # the next step's: the first was used
    expect(stranger).to_have_url(re.compile(r"/$"))

    # A recovery code signs in once.
    lost = new_context(locale=locale).new_page()
    sign_in(lost, alice, PASSWORD, by_label=lang == "en")
    second_step(lost, codes[0])
    expect(lost).to_have_url(re.compile(r"/$"))
    again = new_context(locale=locale).new_page()
    sign_in(again, alice, PASSWORD, by_label=lang == "en")
    second_step(again, codes[0])
    expect(again).to_have_url(re.compile(r"/auth/second-factor$"))
    expect(again.locator(".flash-error")).to_be_visible()
    assert findings == []


def test_a_passkey_is_made_and_signs_in(db, new_context, localhost_url, screenshot):
    alice = "alice@passkey.example"
    make_mailbox(db, alice, PASSWORD)
    context = new_context(base_url=localhost_url)
    page = context.new_page()
    devtools = context.new_cdp_session(page)
    devtools.send("WebAuthn.enable")
    authenticator = devtools.send("WebAuthn.addVirtualAuthenticator", {"options": {
        "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
        "isUserVerified": True, "automaticPresenceSimulation": True}})["authenticatorId"]

    sign_in(page, alice, PASSWORD)
    page.goto("/account/security")
    page.get_by_label("Name of the passkey").fill("laptop")
    page.locator("#passkey-password").fill(PASSWORD)
    page.get_by_role("button", name="Add a passkey").click()
    expect(page.locator("#passkey-codes")).to_be_visible()  # a first factor's recovery codes, shown once
    expect(page.locator("#recovery-codes code")).to_have_count(10)
    findings = serious_findings(axe_violations(page))
    screenshot(page, "passkey-codes", "en")
    page.goto("/account/security")
    expect(page.locator("main")).to_contain_text("laptop")
    screenshot(page, "passkey-added", "en")

    page.locator("form[action$='/auth/logout'] button[type=submit]").click()
    sign_in(page, alice, PASSWORD)
    expect(page).to_have_url(re.compile(r"/auth/second-factor$"))
    findings += serious_findings(axe_violations(page))
    page.get_by_role("button", name="Use a passkey").click()
    expect(page).to_have_url(re.compile(r"/$"))
    [credential] = devtools.send("WebAuthn.getCredentials", {"authenticatorId": authenticator})["credentials"]
    assert credential["signCount"] >= 1
    stored = db.execute("SELECT sign_count, last_used_at FROM portal_webauthn_credentials").fetchone()
    assert stored["last_used_at"] is not None and stored["sign_count"] == credential["signCount"]
    assert findings == []
