"""Forms of the self-service pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import DateField
from wtforms import FieldList
from wtforms import Form
from wtforms import FormField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import RadioField
from wtforms import SelectChoice
from wtforms import SelectField
from wtforms import SelectMultipleField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import InputRequired
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import ValidationError
from wtforms.widgets import CheckboxInput
from wtforms.widgets import ListWidget

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


class VacationForm(FlaskForm):
    """An out-of-office reply: on or off, its words, its days, and the addresses it answers for."""

    enabled = BooleanField(_l("Send an out-of-office reply"))
    subject = StringField(_l("Subject"), validators=[Length(max=200, message=_l("At most %(max)d characters."))])
    body = TextAreaField(_l("Message"), validators=[Length(max=10000, message=_l("At most %(max)d characters."))])
    first_day = DateField(_l("First day (optional)"), validators=[Optional()])
    last_day = DateField(_l("Last day (optional)"), description=_l("After this day no more replies are sent."),
                         validators=[Optional()])
    interval_days = IntegerField(
        _l("Answer the same sender again after (days)"), default=7,
        validators=[InputRequired(_l("Give a number of days.")),
                    NumberRange(min=1, max=30, message=_l("Give 1 to 30 days."))])
    addresses = SelectMultipleField(_l("Answer mail sent to"), choices=[], validate_choice=False,
                                    widget=ListWidget(prefix_label=False), option_widget=CheckboxInput())
    choice = RadioField(_l("Another program's filters are active"), choices=[
        SelectChoice("keep", _l("Keep them, and run my settings here first")),
        SelectChoice("replace", _l("Replace them with my settings here (they stay stored, switched off)"))],
        validators=[Optional()], validate_choice=False)


class FilterRowForm(Form):
    """One filter of the list (part of FiltersForm, which carries the CSRF token)."""

    field = SelectField(_l("When"), validate_choice=False, choices=[
        SelectChoice("from", _l("From")), SelectChoice("to", _l("To or Cc")),
        SelectChoice("subject", _l("Subject")), SelectChoice("list-id", _l("List-Id"))])
    match = SelectField(_l("Compare"), validate_choice=False, choices=[
        SelectChoice("contains", _l("contains")), SelectChoice("is", _l("is"))])
    value = StringField(_l("Text"), validators=[Length(max=200, message=_l("At most %(max)d characters."))])
    action = SelectField(_l("Then"), validate_choice=False, choices=[
        SelectChoice("fileinto", _l("move to folder")), SelectChoice("redirect", _l("forward a copy to")),
        SelectChoice("seen", _l("mark as read")), SelectChoice("discard", _l("delete"))])
    argument = StringField(_l("Folder or address"),
                           validators=[Length(max=254, message=_l("At most %(max)d characters."))])


class FiltersForm(FlaskForm):
    """The ordered list of filters; a row with no text is left out."""

    rows = FieldList(FormField(FilterRowForm), min_entries=1, max_entries=25)
    choice = RadioField(_l("Another program's filters are active"), choices=[
        SelectChoice("keep", _l("Keep them, and run my settings here first")),
        SelectChoice("replace", _l("Replace them with my settings here (they stay stored, switched off)"))],
        validators=[Optional()], validate_choice=False)


class _CurrentPasswordMixin:
    """The current password, asked again before a change that weakens or moves the way in."""

    current_password = PasswordField(
        _l("Current password"),
        validators=[
            DataRequired(_l("Enter your current password.")),
            Length(max=1024, message=_l("This password is too long.")),
        ],
    )

    def validate_current_password(self, field):
        # SASL PLAIN separates its fields with NUL: such a password could never match.
        if "\x00" in (field.data or ""):
            raise ValidationError(_("The password contains a character that cannot be used."))


class RecoveryAddressForm(_CurrentPasswordMixin, FlaskForm):
    """An address outside the mailbox where a forgotten password can be reset (empty: none), and the current
    password: whoever holds only a session must not move where a new password can be sent."""

    address = StringField(_l("Recovery address"),
                          validators=[Length(max=254, message=_l("This address is too long."))])


class TotpConfirmForm(_CurrentPasswordMixin, FlaskForm):
    """The first code of a new authenticator app, and the current password: whoever holds only a session must not
    put a second factor of theirs in front of the owner."""

    code = StringField(_l("Code from the app"),
                       validators=[DataRequired(_l("Type the six-digit code the app shows.")),
                                   Length(max=20, message=_l("A code has six digits."))])


class SecurityChangeForm(_CurrentPasswordMixin, FlaskForm):
    """Removing a second factor or renewing the recovery codes: the current password first, so that whoever
    holds only a session cannot weaken the sign-in."""


class PasskeyForm(_CurrentPasswordMixin, FlaskForm):
    """A new passkey: its name, the current password, and the browser's answer (JSON, filled in by
    static/passkeys.js)."""

    name = StringField(_l("Name of the passkey"), description=_l("For example: laptop, or security key."),
                       validators=[Length(max=60, message=_l("At most 60 characters."))])
    credential = StringField(validators=[DataRequired(), Length(max=20000)])


class MailClientsForm(_CurrentPasswordMixin, FlaskForm):
    """Whether mail clients must use app passwords, and the current password (a session alone must not open IMAP
    to the main password again)."""

    app_passwords_only = BooleanField(_l("Mail clients must use app passwords; the main password works only here"
                                         " in the portal"))


class AppPasswordForm(_CurrentPasswordMixin, FlaskForm):
    """A new app password: its name and services, and the current password (a session alone must not make a
    way into the mail that outlives it)."""

    name = StringField(_l("Name"), description=_l("The device or program it is for, for example: phone."),
                       validators=[DataRequired(_l("Give the app password a name.")),
                                   Length(max=60, message=_l("At most 60 characters."))])
    services = SelectMultipleField(_l("Services"), choices=[], validate_choice=False,
                                   option_widget=CheckboxInput(), widget=ListWidget(prefix_label=False))
