"""Forms of the helpdesk pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import ValidationError

from ..support import MAX_REASON


def _one_line(form, field):
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in field.data or ""):
        raise ValidationError("Write it on one line, without control characters.")


_REASON_LENGTH = Length(max=MAX_REASON, message=f"Use at most {MAX_REASON} characters.")


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class DisableForm(FlaskForm):
    """Disabling asks why; the reason is shown on the mailbox's page and kept in the audit log."""

    reason = StringField(
        "Reason", description="For example: account compromised, ticket 4711. Never write a password here.",
        validators=[DataRequired("Say why the mailbox is disabled."), _REASON_LENGTH, _one_line],
    )


class EnableForm(FlaskForm):
    """Enabling may carry a note."""

    reason = StringField("Note (optional)", validators=[_REASON_LENGTH, _one_line])
