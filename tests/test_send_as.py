"""Send-as on the stack's submission service: STARTTLS, SASL through Dovecot, reject_sender_login_mismatch."""

from __future__ import annotations

import re
import smtplib
import ssl
from email.message import EmailMessage

import pytest

from portal.access import Actor
from portal.queries import aliases as alias_queries
from portal.queries import domains as domain_queries
from portal.queries import mailboxes as mailbox_queries
from portal.rules import alias_domains as alias_domain_rules
from portal.rules import aliases as alias_rules
from portal.rules import send_as as send_as_rules
from tests.conftest import csrf_token
from tests.conftest import grant_and_sign_in
from tests.mail import make_mailbox
from tests.mail import wait_for_maildir_message

# Touches Dovecot or Postfix: scripts/test runs it on the other Debian release too.
pytestmark = pytest.mark.mail_server

DOMAIN, LINKED = "send.example", "send.test"
ALICE, BOB, INFO = f"alice@{DOMAIN}", f"bob@{DOMAIN}", f"info@{DOMAIN}"
PASSWORD = "a long enough test password 21"
CLI = Actor.command_line()
REFUSED = (smtplib.SMTPSenderRefused, smtplib.SMTPRecipientsRefused)


@pytest.fixture
def team(db, mail_stack):
    """alice and bob, alice's personal address, an alias info@ to bob, and send.test linked to send.example."""
    ids = {address: make_mailbox(db, address, PASSWORD) for address in (ALICE, BOB)}
    domain = domain_queries.get_domain(db, domain_queries.get_domain_by_name(db, DOMAIN)["id"])
    alias_queries.add_personal_alias(db, domain["id"], f"shop.alice@{DOMAIN}", ALICE, ids[ALICE])
    alias_rules.save_alias(db, CLI, domain=domain, source=INFO, destinations=[BOB], create=True, reserved=[],
                           delimiter="+")
    alias_domain_rules.create_alias_domain(db, CLI, name=LINKED, target=DOMAIN)
    return ids


def submit(mail_stack, login: str | None, sender: str, subject: str, password: str = PASSWORD) -> None:
    """Send one message to bob through the submission service, as ``login`` (None: without signing in)."""
    context = ssl.create_default_context(cafile=str(mail_stack.tls_cert))
    message = EmailMessage()
    message["From"], message["To"], message["Subject"] = sender, BOB, subject
    message.set_content("sent through submission")
    with smtplib.SMTP("127.0.0.1", mail_stack.submission_port, timeout=10) as smtp:
        smtp.starttls(context=context)
        if login:
            smtp.login(login, password)
        smtp.send_message(message)


def bob_got(mail_stack, subject: str) -> None:
    wait_for_maildir_message(mail_stack.mail_root / DOMAIN / "bob", subject)


def refused_sender(mail_stack, login: str, sender: str) -> str:
    with pytest.raises(REFUSED) as caught:
        submit(mail_stack, login, sender, "must not arrive")
    return str(caught.value)


def mailbox(db, address: str) -> dict:
    return mailbox_queries.get_mailbox(db, address)


def test_alice_sends_as_herself_her_personal_address_and_their_alias_domain_forms(mail_stack, team):
    for sender in (ALICE, f"shop.alice@{DOMAIN}", f"alice@{LINKED}", f"shop.alice@{LINKED}"):
        submit(mail_stack, ALICE, sender, f"from {sender}")
        bob_got(mail_stack, f"from {sender}")


def test_alice_is_refused_as_bob_and_as_info_until_granted(db, mail_stack, team):
    assert "not owned by user alice@send.example" in refused_sender(mail_stack, ALICE, BOB)
    assert "not owned by user" in refused_sender(mail_stack, ALICE, INFO)
    assert "not owned by user" in refused_sender(mail_stack, ALICE, "ceo@elsewhere.example")
    send_as_rules.grant_send_as(db, CLI, mailbox=mailbox(db, ALICE), address=INFO)
    submit(mail_stack, ALICE, INFO, "alice answers for info@")
    bob_got(mail_stack, "alice answers for info@")
    grant = send_as_rules.send_as_of(db, team[ALICE])[0]
    send_as_rules.revoke_send_as(db, CLI, grant_id=grant["id"], domain_id=mailbox(db, ALICE)["domain_id"])
    assert "not owned by user" in refused_sender(mail_stack, ALICE, INFO)


def test_a_grant_never_speaks_for_a_mailbox_or_a_personal_address(db, mail_stack, team):
    for address in (BOB, f"bob@{LINKED}", f"shop.alice@{DOMAIN}"):
        with pytest.raises(send_as_rules.SendAsRefused, match="own address of"):
            send_as_rules.grant_send_as(db, CLI, mailbox=mailbox(db, BOB if "alice" in address else ALICE),
                                        address=address)
    with pytest.raises(send_as_rules.SendAsRefused, match="Only addresses of send.example, send.test"):
        send_as_rules.grant_send_as(db, CLI, mailbox=mailbox(db, ALICE), address="info@elsewhere.example")
    # Even a row written behind the portal's back does not let alice send as bob: the map checks it too.
    db.execute("INSERT INTO portal_send_as (mailbox_id, address) VALUES (%s, %s)", (team[ALICE], BOB))
    assert "not owned by user" in refused_sender(mail_stack, ALICE, BOB)


def test_a_disabled_mailbox_can_neither_send_nor_receive_through_the_alias_domain(db, mail_stack, team):
    db.execute("UPDATE virtual_users SET active = false WHERE email = %s", (ALICE,))
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(mail_stack, ALICE, ALICE, "disabled")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        with smtplib.SMTP("127.0.0.1", mail_stack.smtp_port, timeout=10) as smtp:
            smtp.sendmail("x@remote.invalid", [f"alice@{LINKED}"], "Subject: to a disabled mailbox\n\nhi\n")


def test_submission_needs_tls_and_a_login(mail_stack, team):
    with pytest.raises(REFUSED):
        submit(mail_stack, None, ALICE, "nobody signed in")
    with smtplib.SMTP("127.0.0.1", mail_stack.submission_port, timeout=10) as smtp:
        smtp.ehlo()
        assert not smtp.has_extn("auth")  # no password travels before STARTTLS
    with pytest.raises(smtplib.SMTPAuthenticationError):
        submit(mail_stack, ALICE, ALICE, "wrong password", password="not alice's password at all")


def test_a_domain_admin_grants_on_the_alias_page_and_alice_sees_it(app, db, mail_stack, team):
    make_mailbox(db, f"boss@{DOMAIN}", PASSWORD)
    make_mailbox(db, "other@else.example", PASSWORD)
    clients = grant_and_sign_in(
        app, [("domain-admin", f"boss@{DOMAIN}", DOMAIN), ("domain-admin", "other@else.example", "else.example")],
        {"boss": f"boss@{DOMAIN}", "other": "other@else.example", "alice": ALICE}, PASSWORD)
    page = f"/admin/domains/{DOMAIN}/aliases/{INFO}"
    token = csrf_token(clients["boss"], page)
    response = clients["boss"].post(f"{page}/send-as", data={"csrf_token": token, "mailbox": ALICE})
    assert response.status_code == 302
    shown = clients["boss"].get(page).get_data(as_text=True)
    assert "alice@send.example may now send as info@send.example" in shown and "Take back" in shown
    audit = db.execute("SELECT actor, actor_role, target, summary FROM portal_audit_log WHERE action = 'send_as.grant'"
                       ).fetchone()
    assert audit == {"actor": f"boss@{DOMAIN}", "actor_role": "domain_admin", "target": ALICE,
                     "summary": {"address": INFO}}
    dashboard = clients["alice"].get("/").get_data(as_text=True)
    assert "You may also send as" in dashboard and INFO in dashboard and "may send as another address" in dashboard
    submit(mail_stack, ALICE, INFO, "granted on the page")
    bob_got(mail_stack, "granted on the page")
    # A bob@ is a person's own address: refused on the page, in words.
    response = clients["boss"].post(f"/admin/domains/{DOMAIN}/aliases/{INFO}/send-as",
                                    data={"csrf_token": token, "mailbox": "nobody@send.example"})
    assert response.status_code == 400 and "nobody@send.example is not a mailbox" in response.get_data(as_text=True)
    # Another domain's admin reaches neither the page nor the grant; alice cannot grant herself anything.
    other_token = csrf_token(clients["other"], "/admin/")
    assert clients["other"].post(f"{page}/send-as", data={"csrf_token": other_token, "mailbox": "other@else.example"}
                                 ).status_code == 404
    alice_token = csrf_token(clients["alice"], "/account/forwarding")
    assert clients["alice"].post(f"{page}/send-as", data={"csrf_token": alice_token, "mailbox": ALICE}
                                 ).status_code == 403
    grant = send_as_rules.send_as_of(db, team[ALICE])[0]
    assert clients["other"].post(f"/admin/domains/{DOMAIN}/send-as/{grant['id']}/revoke",
                                 data={"csrf_token": other_token}).status_code == 404
    assert clients["other"].post(f"/admin/domains/else.example/send-as/{grant['id']}/revoke",
                                 data={"csrf_token": other_token}).status_code == 404
    response = clients["boss"].post(f"/admin/domains/{DOMAIN}/send-as/{grant['id']}/revoke", data={"csrf_token": token})
    assert response.status_code == 302 and send_as_rules.send_as_of(db, team[ALICE]) == []


def test_the_command_line_grants_lists_and_revokes(app, db, mail_stack, team):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["send-as", "grant", ALICE, f"info@{LINKED}"])
    assert result.exit_code == 0 and result.output == f"{ALICE} may send as info@{LINKED}\n"
    assert runner.invoke(args=["send-as", "list", ALICE]).output == f"info@{LINKED}\n"
    submit(mail_stack, ALICE, f"info@{LINKED}", "as info on the alias domain")
    bob_got(mail_stack, "as info on the alias domain")
    result = runner.invoke(args=["send-as", "grant", ALICE, BOB])
    assert result.exit_code == 1 and "own address of bob@send.example" in result.output
    result = runner.invoke(args=["send-as", "revoke", ALICE, f"info@{LINKED}"])
    assert result.exit_code == 0 and runner.invoke(args=["send-as", "list", ALICE]).output == ""
    # Unlinking the alias domain takes its grants with it.
    runner.invoke(args=["send-as", "grant", ALICE, f"info@{LINKED}"])
    alias_domain_rules.delete_alias_domain(db, CLI, name=LINKED)
    assert send_as_rules.send_as_of(db, team[ALICE]) == []


def test_grants_stay_with_their_address_and_never_reach_a_person(db, mail_stack, team):
    alice = mailbox(db, ALICE)
    with pytest.raises(send_as_rules.SendAsError, match="may not contain"):
        send_as_rules.grant_send_as(db, CLI, mailbox=alice, address=f"bob+x@{DOMAIN}")
    # A grant written by hand on bob's alias-domain form does not speak for bob either.
    db.execute("INSERT INTO portal_send_as (mailbox_id, address) VALUES (%s, %s)", (team[ALICE], f"bob@{LINKED}"))
    assert "not owned by user" in refused_sender(mail_stack, ALICE, f"bob@{LINKED}")
    # Deleting an alias takes its grants with it.
    send_as_rules.grant_send_as(db, CLI, mailbox=alice, address=INFO)
    domain = domain_queries.get_domain(db, alice["domain_id"])
    alias_rules.delete_alias(db, CLI, domain=domain, source=INFO, reserved=[])
    assert [g["address"] for g in send_as_rules.send_as_of(db, team[ALICE])] == [f"bob@{LINKED}"]
    summary = db.execute("SELECT summary FROM portal_audit_log WHERE action = 'alias.delete'").fetchone()["summary"]
    assert summary["send_as_revoked"] == [ALICE]


def test_the_grant_form_answers_alike_for_a_missing_mailbox_and_another_domains(app, db, team):
    make_mailbox(db, f"boss@{DOMAIN}", PASSWORD)
    make_mailbox(db, "carol@else.example", PASSWORD)
    boss = grant_and_sign_in(app, [("domain-admin", f"boss@{DOMAIN}", DOMAIN)], {"boss": f"boss@{DOMAIN}"},
                             PASSWORD)["boss"]
    page = f"/admin/domains/{DOMAIN}/aliases/{INFO}"
    token = csrf_token(boss, page)
    answers = []
    for address in ("carol@else.example", "nobody@else.example"):
        response = boss.post(f"{page}/send-as", data={"csrf_token": token, "mailbox": address})
        text = re.sub(r'value="[^"]*"', 'value=""', response.get_data(as_text=True)).replace(address, "ADDRESS")
        answers.append((response.status_code, text))
    assert answers[0][0] == answers[1][0] == 400
    assert "ADDRESS is not a mailbox." in answers[0][1] and answers[0][1] == answers[1][1]
