"""Hashes are written in a form the real Dovecot verifies."""

from __future__ import annotations

import re
import subprocess

import pytest

from portal.passwords import hash_password
from portal.passwords import verify_password

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

PASSWORDS = ["correct horse battery staple", "with=equals and 'quotes\"", "비밀번호-한국어", "ünïcödé pässwörd"]


@pytest.mark.parametrize("password", PASSWORDS)
def test_sha512_crypt_format(password):
    stored = hash_password(password)
    assert re.fullmatch(r"\{SHA512-CRYPT\}\$6\$[./0-9A-Za-z]{16}\$[./0-9A-Za-z]{86}", stored)
    # 5,000 rounds (implicit) keeps the bare hash at the 106 characters the guide's column holds.
    assert len(stored) == len("{SHA512-CRYPT}") + 106
    assert verify_password(password, stored)
    assert not verify_password(password + "x", stored)


def test_bare_guide_hash_is_read_as_sha512_crypt():
    stored = hash_password("guide password")
    bare = stored.removeprefix("{SHA512-CRYPT}")
    assert verify_password("guide password", bare)


def test_unknown_scheme_is_refused():
    with pytest.raises(ValueError, match="unsupported password scheme"):
        hash_password("x", scheme="PLAIN")
    assert not verify_password("x", "{PLAIN}x")


@pytest.mark.parametrize("password", PASSWORDS)
def test_dovecot_verifies_the_hash(mail_stack, password):
    stored = hash_password(password)
    ok = subprocess.run(["doveadm", "pw", "-t", stored, "-p", password], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "verified" in ok.stdout + ok.stderr
    wrong = subprocess.run(["doveadm", "pw", "-t", stored, "-p", password + "!"], capture_output=True, text=True)
    assert wrong.returncode != 0


def test_strength_advice_is_in_the_pages_language(app):
    from portal.passwords import policy_problems

    with app.test_request_context(headers={"Accept-Language": "ko"}):
        (problem,) = policy_problems("password1234", address="someone@example.com", current=None, min_length=12,
                                     max_length=128, min_score=3)
    assert "흔" in problem and not re.search(r"[A-Za-z]{4,}", problem), problem  # zxcvbn's advice translated too
    with app.test_request_context(headers={"Accept-Language": "en"}):
        (problem,) = policy_problems("password1234", address="someone@example.com", current=None, min_length=12,
                                     max_length=128, min_score=3)
    assert "common password" in problem
