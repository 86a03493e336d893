"""Forms of the self-service pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import PasswordField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length


class PasswordChangeForm(FlaskForm):
    """The current password and the new one twice."""

    current_password = PasswordField(
        "Current password",
        validators=[
            DataRequired("Enter your current password."),
            Length(max=1024, message="This password is too long."),
        ],
    )
    new_password = PasswordField("New password", validators=[DataRequired("Enter a new password.")])
    confirm_password = PasswordField(
        "New password again",
        validators=[
            DataRequired("Enter the new password a second time."),
            EqualTo("new_password", message="The two new passwords are not the same."),
        ],
    )
