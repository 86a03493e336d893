"""The portal's Sieve scripts: whatever a user types, the script means what the form says, proven by
Pigeonhole's own interpreter (sieve-test) running the rendered script against real messages."""

from __future__ import annotations

import re
import subprocess
import tempfile
from datetime import date
from email.message import EmailMessage
from email.policy import SMTP
from pathlib import Path

import pytest
from hypothesis import HealthCheck
from hypothesis import given
from hypothesis import settings
from hypothesis import strategies as st

from portal import mailconfig
from portal import sieve

pytestmark = pytest.mark.mail_server

# What a form field can hold once the rule layer let it through: any character but control characters,
# surrogates and the replacement character (sieve.text_problem refuses those).
TYPED = st.text(st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\ufffd"),
                min_size=1, max_size=120).filter(lambda t: t.strip() == t and t)


def run_script(script: str, subject: str, sender: str = "bob@r.example") -> tuple[list[str], list[str]]:
    """What Sieve does with a message of this subject: (the actions it performs, what the implicit keep does)."""
    with tempfile.TemporaryDirectory(prefix="portal-sieve-test-") as scratch:
        directory = Path(scratch)
        config = sieve.write_private_config(directory)
        if mailconfig.dovecot_series() == "2.4":
            mail = f"mail_driver = maildir\nmail_path = {directory}/mail\n"
        else:
            mail = f"mail_location = maildir:{directory}/mail\n"
        with config.open("a") as extra:
            extra.write(f"mail_uid = nobody\nmail_gid = nogroup\n{mail}")
        (directory / "mail").mkdir()
        directory.chmod(0o777)
        (directory / "mail").chmod(0o777)
        (directory / "s.sieve").write_text(script, encoding="utf-8")
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = sender, "alice@r.example", subject
        message.set_content("hello")
        (directory / "m.eml").write_bytes(message.as_bytes(policy=SMTP))
        result = subprocess.run(["sieve-test", "-c", str(config), str(directory / "s.sieve"),  # noqa: S603, S607
                                 str(directory / "m.eml")], capture_output=True, text=True, timeout=20, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    performed, _sep, keep = result.stdout.partition("Implicit keep:")
    pick = re.compile(r"^ \* (.+)$", re.M)
    return pick.findall(performed), pick.findall(keep)


def test_quote_escapes_only_backslash_and_double_quote():
    assert sieve.quote('a"b\\c ${x} \n') == '"a\\"b\\\\c ${x} \n"'


def test_text_problem_refuses_what_cannot_be_typed():
    assert sieve.text_problem("fine 한국어") is None
    assert sieve.text_problem("two\nlines") == "control"
    assert sieve.text_problem("two\nlines", multiline=True) is None
    assert sieve.text_problem("nul\x00") == "control"
    assert sieve.text_problem("bad \ufffd bytes") == "not-utf8"
    assert sieve.text_problem("lone \udc80") == "not-utf8"


def test_nothing_to_do_needs_no_extension():
    assert sieve.render(sieve.MailRules()) == (
        "# Written by the mail portal from its database; a save there replaces this script.\n")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=TYPED)
def test_a_filter_on_any_typed_text_matches_that_text_and_does_only_what_it_says(text):
    script = sieve.render(sieve.MailRules(filters=(
        sieve.Filter("subject", "is", text, "fileinto", text.replace("/", "-").lstrip(".") or "x"),)))
    assert sieve.compile_problem(script) is None
    performed, keep = run_script(script, text)
    assert len(performed) == 1 and performed[0].startswith("store message in folder:"), performed
    assert keep == []
    performed, keep = run_script(script, text + " and more")
    assert performed == [] and keep == ["store message in folder: INBOX"]


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(subject=TYPED, body=st.lists(TYPED, min_size=1, max_size=4).map("\n".join))
def test_a_reply_with_any_typed_words_is_one_reply_and_nothing_else(subject, body):
    script = sieve.render(sieve.MailRules(vacation=sieve.Vacation(True, subject, body, None, None, 1,
                                                                  ("alice@r.example",))))
    assert sieve.compile_problem(script) is None
    performed, keep = run_script(script, "hello")
    assert len(performed) == 1 and performed[0].startswith("send vacation message"), performed
    assert keep == ["store message in folder: INBOX"]


def test_a_reply_runs_only_between_its_days():
    def with_days(first, last):
        return sieve.render(sieve.MailRules(vacation=sieve.Vacation(True, "Away", "x", first, last, 1,
                                                                    ("alice@r.example",))))
    today = date.today()
    assert run_script(with_days(None, date(2020, 1, 2)), "hello")[0] == []
    assert run_script(with_days(date(2099, 1, 1), None), "hello")[0] == []
    assert len(run_script(with_days(date(2020, 1, 1), today), "hello")[0]) == 1


def test_marking_as_read_counts_wherever_another_filter_files_the_message():
    script = sieve.render(sieve.MailRules(filters=(
        sieve.Filter("from", "is", "bob@r.example", "fileinto", "Bob"),
        sieve.Filter("subject", "contains", "read", "seen"))))
    performed, _keep = run_script(script, "please read")
    assert any("Bob" in action for action in performed)
    assert script.index('addflag "\\\\Seen"') < script.index('fileinto :create "Bob"')


@pytest.mark.parametrize("broken", ['vacation "x"\nkeep;', "fileinto;", 'if header :is "a" { keep; }'])
def test_the_compiler_names_the_line_and_the_problem(broken):
    problem = sieve.compile_problem(broken + "\n")
    assert problem and re.search(r"line \d+:", problem), problem
