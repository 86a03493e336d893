"""Browser fixtures: the portal under gunicorn against the test stack, Chromium through Playwright, axe-core."""

from __future__ import annotations

import os
import re
import secrets
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import stack
from playwright.sync_api import sync_playwright

from tests.conftest import NOTICE_FROM
from tests.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
SERVER_LOG = ROOT / "artifacts" / "e2e-gunicorn.log"
AXE = ROOT / ".cache" / "axe-core" / "axe.min.js"
CHROMIUM = "/usr/bin/chromium"
PHONE = {"width": 390, "height": 844}



def _wait_healthy(url: str, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}; see {SERVER_LOG}:\n{_log_tail()}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            last = f"{exc.code} {exc.read()[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise RuntimeError(f"{url}/healthz not healthy after {seconds} s ({last}); log:\n{_log_tail()}")


def _log_tail(lines: int = 40) -> str:
    try:
        return "\n".join(SERVER_LOG.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def serve(mail_stack, database_url, host: str = "127.0.0.1", log_path: Path | None = None):
    """Serve the portal with gunicorn (two workers) against the test stack on 127.0.0.1, its public address
    naming ``host``; yield its base URL."""
    port = free_port()
    env = {name: value for name, value in os.environ.items()
           if not name.startswith("PORTAL_") or name == "PORTAL_STACK_DIR"}
    env.pop("FLASK_DEBUG", None)
    env.update({
        "PORTAL_DATABASE_URL": database_url,
        "PORTAL_IMAP_HOST": "127.0.0.1",
        "PORTAL_IMAP_PORT": str(mail_stack.portal_imap_port),
        "PORTAL_IMAP_SECURITY": "plain",
        "PORTAL_SECRET_KEY": secrets.token_hex(32),
        "PORTAL_COOKIE_SECURE": "false",
        "PORTAL_MAIL_ROOT": str(mail_stack.mail_root),
        "PORTAL_TRUSTED_PROXY_COUNT": "0",
        # doveadm's HTTP API, as production has it: the storage page lists folders through it.
        "PORTAL_DOVEADM_URL": mail_stack.doveadm_url,
        "PORTAL_DOVEADM_API_KEY": stack.stack_secrets()["doveadm_api_key"],
        # Notices and recovery links go out through the test stack's Postfix, with links to this server.
        "PORTAL_NOTICE_FROM": NOTICE_FROM,
        "PORTAL_NOTICE_SMTP_PORT": str(mail_stack.smtp_port),
        "PORTAL_PUBLIC_URL": f"http://{host}:{port}",
        # Role holders are not sent to enrol a second factor here (tests/test_second_factors.py proves that).
        "PORTAL_SECOND_FACTOR_REQUIRED_ROLES": "",
    })
    assert "PORTAL_CONFIG" not in env
    log_path = log_path or SERVER_LOG
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [str(ROOT / ".venv/bin/gunicorn"), "--config", "config/gunicorn.conf.py", "--workers", "2",
             "--bind", f"127.0.0.1:{port}", "app:app"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        _wait_healthy(f"http://127.0.0.1:{port}", process)
        yield f"http://{host}:{port}"
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)  # our own gunicorn's group only
            process.wait(timeout=5)


@pytest.fixture(scope="session")
def portal_url(mail_stack, database_url):
    """The portal served by gunicorn at http://127.0.0.1:PORT."""
    yield from serve(mail_stack, database_url)


@pytest.fixture(scope="session")
def browser():
    """One headless Debian Chromium for the whole run (never a downloaded browser)."""
    playwright = sync_playwright().start()
    try:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            yield chromium
        finally:
            chromium.close()
    finally:
        playwright.stop()


@pytest.fixture
def new_context(browser, portal_url):
    """Make fresh browser contexts (no cookies) for this test; all are closed afterwards."""
    contexts = []

    refused = []

    def make(**options):
        options.setdefault("base_url", portal_url)
        options.setdefault("locale", "en-US")
        context = browser.new_context(**options)
        context.set_default_timeout(15_000)
        # Anything the Content-Security-Policy blocks is a defect of the page.
        context.on("console", lambda message: refused.append(message.text)
                   if "Content Security Policy" in message.text else None)
        contexts.append(context)
        return context

    yield make
    for context in contexts:
        context.close()
    assert refused == [], refused


@pytest.fixture
def context(new_context):
    return new_context()


@pytest.fixture
def page(context):
    return context.new_page()


def html_lang(page) -> str:
    return page.evaluate("document.documentElement.lang")


@pytest.fixture
def screenshot():
    """Save a full-page PNG to artifacts/screenshots/<lang>/<name>.png (lang: the page's own by default)."""

    def take(page, name: str, lang: str | None = None) -> Path:
        lang = lang or html_lang(page) or "unknown"
        path = SCREENSHOTS / lang / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name)}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


def axe_violations(page) -> list[dict]:
    """Run axe-core on the page as it is now; return its violations."""
    assert AXE.is_file(), f"{AXE} is missing: run scripts/fetch-axe"
    if not page.evaluate("typeof window.axe !== 'undefined'"):
        # Evaluated through the DevTools protocol: the portal's Content-Security-Policy (no inline
        # script) stays on, and would refuse a <script> tag.
        page.evaluate(AXE.read_text())
    return page.evaluate("async () => (await axe.run(document, {resultTypes: ['violations']})).violations")


def serious_findings(violations: list[dict]) -> list[dict]:
    """Flatten violations of impact serious or critical into one row per element."""
    rows = []
    for violation in violations:
        if violation.get("impact") not in ("serious", "critical"):
            continue
        for node in violation["nodes"]:
            rows.append({"rule": violation["id"], "impact": violation["impact"], "help": violation["help"],
                         "target": " ".join(map(str, node["target"])), "html": node["html"][:160],
                         "summary": (node.get("failureSummary") or "").replace("\n", " ")[:300]})
    return rows


def sign_in(page, address: str, password: str, by_label: bool = True) -> None:
    """Sign in through the form. With by_label, find the fields by their (English) labels."""
    page.goto("/auth/login")
    if by_label:
        page.get_by_label("E-mail address").fill(address)
        page.get_by_label("Password", exact=True).fill(password)
        submit = page.get_by_role("button", name="Sign in")
    else:  # any language: by the fields' names and the form's only submit button
        page.locator("input[name=address]").fill(address)
        page.locator("input[name=password]").fill(password)
        submit = page.locator("main form button[type=submit]")
    with page.expect_navigation():
        submit.click()
    if "/auth/login" in page.url:
        problems = page.locator("main [role=alert], main .field-errors").all_inner_texts()
        raise AssertionError(f"sign-in as {address} failed: {page.url} {problems}")
