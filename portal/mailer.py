"""The SMTP server the portal's own mail goes out through (normally the local Postfix)."""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import formatdate
from email.utils import make_msgid


class MailerUnavailable(Exception):
    """The SMTP server refused the message or could not be reached; the message says which."""


def compose(*, sender: str, recipient: str, subject: str, text: str, html: str, language: str) -> EmailMessage:
    """A text and HTML message from the portal; header values are encoded, and a line break in one is refused.

    Auto-Submitted keeps out-of-office replies and list managers from answering it (RFC 3834)."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sender
    message["To"] = recipient
    message["Subject"] = subject
    message["Date"] = formatdate(localtime=False, usegmt=True)
    message["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    # After the content: setting it clears every Content- field.
    message["Content-Language"] = language
    return message


def send(config, sender: str, recipient: str, message: bytes) -> None:
    """Hand one message to the SMTP server in ``config``; raise MailerUnavailable if it is not accepted."""
    timeout = float(config["NOTICE_SMTP_TIMEOUT"])
    try:
        with smtplib.SMTP(config["NOTICE_SMTP_HOST"], int(config["NOTICE_SMTP_PORT"]), timeout=timeout) as smtp:
            smtp.ehlo()
            if smtp.has_extn("starttls") and config["NOTICE_SMTP_HOST"] not in ("127.0.0.1", "::1", "localhost"):
                smtp.starttls(context=ssl.create_default_context())
                smtp.ehlo()
            refused = smtp.sendmail(sender, [recipient], message)
    except (smtplib.SMTPException, OSError) as exc:
        raise MailerUnavailable(f"{type(exc).__name__}: {exc}"[:300]) from None
    if refused:
        raise MailerUnavailable(f"refused: {refused}"[:300])
