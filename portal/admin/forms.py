"""Forms of the admin pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import DateField
from wtforms import IntegerField
from wtforms import PasswordField
from wtforms import SelectChoice
from wtforms import SelectField
from wtforms import StringField
from wtforms import TextAreaField
from wtforms.validators import DataRequired
from wtforms.validators import EqualTo
from wtforms.validators import Length
from wtforms.validators import NumberRange
from wtforms.validators import Optional
from wtforms.validators import ValidationError

from ..auditlog import ACTIONS
from ..queries.listing import AUDIT_SORTS
from ..queries.listing import MIN_SUBSTRING


class SearchForm(FlaskForm):
    """Search of a list page (a GET form: nothing changes, so no CSRF token)."""

    class Meta:
        csrf = False

    q = StringField("Search", validators=[Length(max=254, message="Search for at most 254 characters.")])
    mode = SelectField(
        "Match",
        choices=[SelectChoice("prefix", "starts with"), SelectChoice("contains", "contains")],
        default="prefix",
    )
    # Choices are the list's own allow-list (portal/queries/listing.py), set by the view.
    sort = SelectField("Sort by", choices=[], validate_choice=True)

    def validate_q(self, field):
        text = (field.data or "").strip()
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            raise ValidationError("The search contains control characters.")
        if self.mode.data == "contains" and 0 < len(text) < MIN_SUBSTRING:
            raise ValidationError(f"Searching inside addresses needs at least {MIN_SUBSTRING} characters.")


class NewMailboxForm(FlaskForm):
    """A new mailbox: its name, a password typed twice or generated, and a size limit."""

    local_part = StringField(
        "Address",
        validators=[DataRequired("Enter the part before the @."), Length(max=64, message="Use at most 64 characters.")],
    )
    display_name = StringField("Name", validators=[Length(max=255, message="Use at most 255 characters.")])
    generate = BooleanField("Generate a password (shown once)")
    password = PasswordField("Password", validators=[Length(max=1024, message="This password is too long.")])
    confirm_password = PasswordField(
        "Password again", validators=[EqualTo("password", message="The two passwords are not the same.")]
    )
    quota = StringField(
        "Size limit", description="For example 2 GB. Leave empty for the domain's default.",
        validators=[Length(max=32, message="Write a size such as 2 GB.")],
    )

    def validate_password(self, field):
        if not self.generate.data and not field.data:
            raise ValidationError("Enter a password, or let the portal generate one.")
        if "\x00" in (field.data or ""):
            raise ValidationError("The password contains a character that cannot be used.")


class EditMailboxForm(FlaskForm):
    """What an admin may change on a mailbox: its name, size limit, whether it is active, its password."""

    display_name = StringField("Name", validators=[Length(max=255, message="Use at most 255 characters.")])
    quota = StringField(
        "Size limit", description="For example 2 GB. 0 or empty: the domain's default.",
        validators=[Length(max=32, message="Write a size such as 2 GB.")],
    )
    active = BooleanField("Active (can sign in and receive mail)")
    new_password = PasswordField(
        "New password", description="Leave empty to keep the current one.",
        validators=[Length(max=1024, message="This password is too long.")],
    )
    confirm_password = PasswordField(
        "New password again", validators=[EqualTo("new_password", message="The two passwords are not the same.")]
    )


class DeleteMailboxForm(FlaskForm):
    """Deleting asks for the address typed again."""

    confirm = StringField("Type the address to confirm", validators=[DataRequired("Type the address to confirm.")])


class DomainForm(FlaskForm):
    """A domain's name (on creation) and its limits and switches."""

    name = StringField("Domain name", validators=[Length(max=253, message="Use at most 253 characters.")])
    active = BooleanField("Active (its mailboxes sign in and receive mail)", default=True)
    max_mailboxes = IntegerField("Most mailboxes (0: no limit)", default=0,
                                 validators=[NumberRange(0, 10_000_000, "Use a number from 0 up.")])
    max_aliases = IntegerField("Most aliases (0: no limit)", default=0,
                               validators=[NumberRange(0, 10_000_000, "Use a number from 0 up.")])
    default_quota = StringField("Default size limit per mailbox", description="For example 2 GB; empty: unlimited.",
                                validators=[Length(max=32)])
    max_quota = StringField("Largest size limit per mailbox", description="Empty: no ceiling.",
                            validators=[Length(max=32)])
    allow_personal_aliases = BooleanField("Users may create personal addresses", default=True)
    max_personal_aliases = IntegerField("Personal addresses per user", default=5,
                                        validators=[NumberRange(0, 1000, "Use a number from 0 to 1000.")])


class AliasForm(FlaskForm):
    """An alias address (new ones only) and where it delivers."""

    local_part = StringField("Address", validators=[Length(max=64, message="Use at most 64 characters.")])
    catch_all = BooleanField("Catch-all: every address of the domain that is not a mailbox or another alias")
    destinations = TextAreaField(
        "Delivers to", description="One address per line.",
        validators=[Length(max=100_000, message="This list is too long.")],
    )


class DeleteDomainForm(FlaskForm):
    """Deleting a domain asks for its name typed again."""

    confirm = StringField("Type the domain name to confirm", validators=[DataRequired("Type the domain name.")])


class GrantRoleForm(FlaskForm):
    """A role to give: to which mailbox, which role, and in which domain."""

    address = StringField(
        "Mailbox", validators=[DataRequired("Enter the mailbox's address."), Length(max=254, message="Too long.")]
    )
    role = SelectField(
        "Role",
        choices=[SelectChoice("domain-admin", "domain admin"), SelectChoice("helpdesk", "helpdesk"),
                 SelectChoice("superadmin", "superadmin")],
    )
    domain = StringField(
        "Domain", description="Needed for a domain admin; for helpdesk, empty means every domain.",
        validators=[Length(max=253, message="Use at most 253 characters.")],
    )


class AuditFilterForm(FlaskForm):
    """Filters of the audit log (a GET form: nothing changes, so no CSRF token)."""

    class Meta:
        csrf = False

    actor = StringField("Who", description="The full address, or cli.",
                        validators=[Optional(), Length(max=254, message="Use at most 254 characters.")])
    target = StringField("Concerning", description="A full address or domain name.",
                         validators=[Optional(), Length(max=254, message="Use at most 254 characters.")])
    action = SelectField("What", choices=[SelectChoice("", "anything")]
                         + [SelectChoice(key, label) for key, label in ACTIONS.items()], default="")
    since = DateField("From (UTC)", validators=[Optional()], format="%Y-%m-%d")
    until = DateField("To (UTC, inclusive)", validators=[Optional()], format="%Y-%m-%d")
    sort = SelectField("Order", choices=[SelectChoice(name, s.label) for name, s in AUDIT_SORTS.items()],
                       default="newest")

    def validate_actor(self, field):
        _printable(field)

    def validate_target(self, field):
        _printable(field)

    def validate_since(self, field):
        if field.data and field.data.year > 9998:
            raise ValidationError("Use a date before the year 9999.")

    def validate_until(self, field):
        if field.data and field.data.year > 9998:
            raise ValidationError("Use a date before the year 9999.")
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError("The end of the range is before its start.")


def _printable(field):
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in field.data or ""):
        raise ValidationError("This contains control characters.")
