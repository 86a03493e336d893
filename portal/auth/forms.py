"""Forms of the sign-in pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import HiddenField
from wtforms import PasswordField
from wtforms import StringField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import ValidationError

from ..addresses import InvalidAddress
from ..addresses import canonical_address
from ..i18n import _
from ..i18n import _l


class LoginForm(FlaskForm):
    """Mailbox address and password, as in a mail client."""

    address = StringField(
        _l("E-mail address"),
        validators=[
            DataRequired(_l("Enter your e-mail address.")),
            Length(max=254, message=_l("This address is too long.")),
        ],
    )
    password = PasswordField(
        _l("Password"),
        validators=[
            DataRequired(_l("Enter your password.")),
            Length(max=1024, message=_l("This password is too long.")),
        ],
    )
    next = HiddenField()

    def validate_address(self, field):
        try:
            self.canonical_address = canonical_address(field.data or "")
        except InvalidAddress:
            raise ValidationError(_("Enter a valid e-mail address, for example name@example.com.")) from None

    def validate_password(self, field):
        # SASL PLAIN separates its fields with NUL: such a password could never match.
        if "\x00" in (field.data or ""):
            raise ValidationError(_("The password contains a character that cannot be used."))


class LogoutForm(FlaskForm):
    """Only the CSRF token: signing out is a POST."""


class ColourModeForm(FlaskForm):
    """The colour mode switch on every page."""

    mode = HiddenField()
    next = HiddenField()


class LanguageForm(FlaskForm):
    """The language switch on every page."""

    lang = HiddenField()
    next = HiddenField()


class ForgotPasswordForm(FlaskForm):
    """The address whose password was forgotten."""

    address = StringField(
        _l("E-mail address"),
        validators=[
            DataRequired(_l("Enter your e-mail address.")),
            Length(max=254, message=_l("This address is too long.")),
        ],
    )


class NewPasswordForm(FlaskForm):
    """A new password, twice, chosen through a recovery link."""

    new_password = PasswordField(
        _l("New password"),
        validators=[DataRequired(_l("Enter a new password.")),
                    Length(max=1024, message=_l("This password is too long."))],
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[
            DataRequired(_l("Enter the new password a second time.")),
            EqualTo("new_password", message=_l("The two new passwords are not the same.")),
        ],
    )
    # Asked only of a mailbox with a second factor: a link to the recovery address is not enough then.
    code = StringField(_l("Code from your authenticator app, or a recovery code"),
                       validators=[Length(max=40, message=_l("This code is too long."))])


class VerifyRecoveryForm(FlaskForm):
    """The confirmation button of a recovery address, with the link's token."""

    token = HiddenField()


class SecondFactorForm(FlaskForm):
    """The second step of a sign-in: a code from the authenticator app, or a recovery code."""

    code = StringField(_l("Code"), description=_l("The six digits your authenticator app shows, or one of your"
                                                  " recovery codes."),
                       validators=[DataRequired(_l("Type the code.")),
                                   Length(max=40, message=_l("This code is too long."))])


class PasskeySignInForm(FlaskForm):
    """The second step with a passkey: the browser's signed answer (JSON, filled in by static/passkeys.js)."""

    credential = StringField(validators=[DataRequired(), Length(max=20000)])
