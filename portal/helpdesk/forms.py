"""Forms of the helpdesk pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import Length

from ..i18n import _l
from ..rules.helpdesk import MAX_REASON
from ..text import one_line

_REASON_LENGTH = Length(max=MAX_REASON, message=_l("Use at most %(count)s characters.", count=MAX_REASON))


class ActionForm(FlaskForm):
    """A button that changes something: only the CSRF token."""


class DisableForm(FlaskForm):
    """Disabling asks why; the reason is shown on the mailbox's page and kept in the audit log."""

    reason = StringField(
        _l("Reason"), description=_l("For example: account compromised, ticket 4711. Never write a password here."),
        validators=[DataRequired(_l("Say why the mailbox is disabled.")), _REASON_LENGTH, one_line],
    )


class EnableForm(FlaskForm):
    """Enabling may carry a note."""

    reason = StringField(_l("Note (optional)"), validators=[_REASON_LENGTH, one_line])
