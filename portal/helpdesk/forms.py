"""Forms of the helpdesk pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length
from wtforms.validators import ValidationError

from ..i18n import _
from ..i18n import _l
from ..rules.helpdesk import MAX_REASON


def _one_line(form, field):
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in field.data or ""):
        raise ValidationError(_("Write it on one line, without control characters."))


_REASON_LENGTH = Length(max=MAX_REASON, message=_l("Use at most %(count)s characters.", count=MAX_REASON))


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class DisableForm(FlaskForm):
    """Disabling asks why; the reason is shown on the mailbox's page and kept in the audit log."""

    reason = StringField(
        _l("Reason"), description=_l("For example: account compromised, ticket 4711. Never write a password here."),
        validators=[DataRequired(_l("Say why the mailbox is disabled.")), _REASON_LENGTH, _one_line],
    )


class EnableForm(FlaskForm):
    """Enabling may carry a note."""

    reason = StringField(_l("Note (optional)"), validators=[_REASON_LENGTH, _one_line])
