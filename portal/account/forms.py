"""Forms of the self-service pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import DateField
from wtforms import PasswordField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from ..i18n import _
from ..i18n import _l


class PasswordChangeForm(FlaskForm):
    """The current password and the new one twice."""

    current_password = PasswordField(
        _l("Current password"),
        validators=[
            DataRequired(_l("Enter your current password.")),
            Length(max=1024, message=_l("This password is too long.")),
        ],
    )
    new_password = PasswordField(_l("New password"), validators=[DataRequired(_l("Enter a new password."))])

    def validate_current_password(self, field):
        # SASL PLAIN separates its fields with NUL: such a password could never match.
        if "\x00" in (field.data or ""):
            raise ValidationError(_("The password contains a character that cannot be used."))
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[
            DataRequired(_l("Enter the new password a second time.")),
            EqualTo("new_password", message=_l("The two new passwords are not the same.")),
        ],
    )


class ForwardingForm(FlaskForm):
    """Forwarding destinations, one per line, and whether a copy stays in the mailbox."""

    destinations = TextAreaField(
        _l("Forward my mail to"),
        description=_l("One address per line. Leave empty to receive mail only here."),
        validators=[Length(max=20000, message=_l("This list is too long."))],
    )
    keep_copy = BooleanField(_l("Also keep a copy in my mailbox"))


class PersonalAliasForm(FlaskForm):
    """The part before the @ of a new personal alias."""

    local_part = StringField(
        _l("New address"),
        validators=[
            DataRequired(_l("Enter the part before the @.")),
            Length(max=64, message=_l("Use at most 64 characters.")),
        ],
    )


class DeleteForm(FlaskForm):
    """Only the CSRF token: deleting is a POST."""


class ApiTokenForm(FlaskForm):
    """A new API token: its name, and how it is narrowed."""

    name = StringField(
        _l("Name"),
        description=_l("What uses it, for example: student records sync."),
        validators=[DataRequired(_l("Give the token a name.")),
                    Length(max=100, message=_l("At most 100 characters."))],
    )
    domains = TextAreaField(
        _l("Only these domains"),
        description=_l("One domain per line. Leave empty for every domain of yours."),
        validators=[Length(max=20000, message=_l("This list is too long."))],
    )
    read_only = BooleanField(_l("Read only: the token can look, not change"))
    expires_on = DateField(_l("Valid until (inclusive)"), validators=[Optional()],
                           description=_l("Leave empty for a token that lasts until it is revoked."))
