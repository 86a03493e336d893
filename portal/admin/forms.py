"""Forms of the admin pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import BooleanField
from wtforms import DateField
from wtforms import HiddenField
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
from ..i18n import _
from ..i18n import _l
from ..queries.listing import AUDIT_SORTS
from ..queries.listing import MIN_SUBSTRING
from ..text import one_line

# What people call each sort order of portal/queries/listing.py, in their language.
SORT_LABELS = {
    "address": _l("address, A to Z"), "address-desc": _l("address, Z to A"), "mailboxes": _l("most mailboxes"),
    "name": _l("name, A to Z"), "name-desc": _l("name, Z to A"), "newest": _l("newest first"),
    "oldest": _l("oldest first"), "role": _l("role"), "purge": _l("soonest purge first"),
}

# What each state a list can be narrowed to is called (portal/queries/listing.py).
STATE_LABELS = {
    "mailboxes": {"": _l("all mailboxes"), "disabled": _l("disabled mailboxes"),
                  "over-80": _l("at least %(percent)s %% full", percent=80),
                  "over-95": _l("at least %(percent)s %% full", percent=95)},
    "domains": {"": _l("all domains"), "near-limits": _l("near their mailbox or alias limit"),
                "disabled": _l("with disabled mailboxes"),
                "over-80": _l("with mailboxes at least %(percent)s %% full", percent=80),
                "over-95": _l("with mailboxes at least %(percent)s %% full", percent=95)},
}


def sort_choices(sorts: dict) -> list[SelectChoice]:
    """The choices of a list's sort menu."""
    return [SelectChoice(name, SORT_LABELS.get(name, sort.label)) for name, sort in sorts.items()]



class SearchForm(FlaskForm):
    """Search of a list page (a GET form: nothing changes, so no CSRF token)."""

    class Meta:
        csrf = False

    q = StringField(_l("Search"), validators=[Length(max=254, message=_l("Search for at most 254 characters."))])
    mode = SelectField(
        _l("Match"),
        choices=[SelectChoice("prefix", _l("starts with")), SelectChoice("contains", _l("contains"))],
        default="prefix",
    )
    # Choices are the list's own allow-lists (portal/queries/listing.py), set by the view.
    sort = SelectField(_l("Sort by"), choices=[], validate_choice=True)
    state = SelectField(_l("Show"), choices=[SelectChoice("", "")], validate_choice=True, default="")

    def validate_q(self, field):
        text = (field.data or "").strip()
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            raise ValidationError(_("The search contains control characters."))
        if self.mode.data == "contains" and 0 < len(text) < MIN_SUBSTRING:
            raise ValidationError(
                _("Searching inside addresses needs at least %(count)s characters.", count=MIN_SUBSTRING)
            )


class NewMailboxForm(FlaskForm):
    """A new mailbox: its name, a password typed twice or generated, and a size limit."""

    local_part = StringField(
        _l("Address"),
        validators=[
            DataRequired(_l("Enter the part before the @.")),
            Length(max=64, message=_l("Use at most 64 characters.")),
        ],
    )
    display_name = StringField(_l("Name"), validators=[Length(max=255, message=_l("Use at most 255 characters.")),
                                                       one_line])
    generate = BooleanField(_l("Generate a password (shown once)"))
    final = BooleanField(_l("The owner chose this password: mail clients may use it at once"),
                         description=_l("Otherwise it works only to sign in here once, where its owner must choose a"
                                        " new one; until then mail clients refuse it."))
    password = PasswordField(
        _l("Password"), validators=[Length(max=1024, message=_l("This password is too long."))]
    )
    confirm_password = PasswordField(
        _l("Password again"), validators=[EqualTo("password", message=_l("The two passwords are not the same."))]
    )
    quota = StringField(
        _l("Size limit"), description=_l("For example 2 GB. Leave empty for the domain's default."),
        validators=[Length(max=32, message=_l("Write a size such as 2 GB."))],
    )

    def validate_password(self, field):
        if not self.generate.data and not field.data:
            raise ValidationError(_("Enter a password, or let the portal generate one."))
        if "\x00" in (field.data or ""):
            raise ValidationError(_("The password contains a character that cannot be used."))


class EditMailboxForm(FlaskForm):
    """What an admin may change on a mailbox: its name, size limit, whether it is active, its password."""

    # The state the form was filled from, to notice a change made meanwhile by someone else.
    version = HiddenField()

    display_name = StringField(_l("Name"), validators=[Length(max=255, message=_l("Use at most 255 characters.")),
                                                       one_line])
    quota = StringField(
        _l("Size limit"), description=_l("For example 2 GB. 0 or empty: the domain's default."),
        validators=[Length(max=32, message=_l("Write a size such as 2 GB."))],
    )
    active = BooleanField(_l("Active (can sign in and receive mail)"))
    new_password = PasswordField(
        _l("New password"), description=_l("Leave empty to keep the current one."),
        validators=[Length(max=1024, message=_l("This password is too long."))],
    )
    confirm_password = PasswordField(
        _l("New password again"),
        validators=[EqualTo("new_password", message=_l("The two passwords are not the same."))],
    )
    final = BooleanField(_l("The owner chose this password: mail clients may use it at once"),
                         description=_l("Otherwise it works only to sign in here once, where its owner must choose a"
                                        " new one; until then mail clients refuse it."))


class BulkSelectForm(FlaskForm):
    """What to do with the mailboxes selected in a list (their addresses come as repeated "mailbox" fields).

    The list sends it to the review page; the review page sends it again with ``confirmed`` set."""

    action = SelectField(
        _l("With the selected mailboxes"),
        choices=[SelectChoice("disable", _l("disable")), SelectChoice("enable", _l("enable")),
                 SelectChoice("limit", _l("set the size limit")), SelectChoice("delete", _l("delete"))],
        validate_choice=True,
    )
    quota = StringField(
        _l("New size limit"), description=_l("Only to set the size limit. For example 2 GB; 0: the domain's default."),
        validators=[Length(max=32, message=_l("Write a size such as 2 GB."))],
    )
    confirmed = HiddenField()


class DeleteMailboxForm(FlaskForm):
    """Deleting asks for the address typed again."""

    confirm = StringField(
        _l("Type the address to confirm"), validators=[DataRequired(_l("Type the address to confirm."))]
    )


class DomainForm(FlaskForm):
    """A domain's name (on creation) and its limits and switches."""

    # The settings the form was filled from, to notice a change made meanwhile by someone else.
    version = HiddenField()

    name = StringField(_l("Domain name"), validators=[Length(max=253, message=_l("Use at most 253 characters."))])
    active = BooleanField(_l("Active (its mailboxes sign in and receive mail)"), default=True)
    max_mailboxes = IntegerField(_l("Most mailboxes (0: no limit)"), default=0,
                                 validators=[NumberRange(0, 10_000_000, _l("Use a number from 0 up."))])
    max_aliases = IntegerField(_l("Most aliases (0: no limit)"), default=0,
                               validators=[NumberRange(0, 10_000_000, _l("Use a number from 0 up."))])
    default_quota = StringField(_l("Default size limit per mailbox"),
                                description=_l("For example 2 GB; empty: unlimited."), validators=[Length(max=32)])
    max_quota = StringField(_l("Largest size limit per mailbox"), description=_l("Empty: no ceiling."),
                            validators=[Length(max=32)])
    allow_personal_aliases = BooleanField(_l("Users may create personal addresses"), default=True)
    max_personal_aliases = IntegerField(_l("Personal addresses per user"), default=5,
                                        validators=[NumberRange(0, 1000, _l("Use a number from 0 to 1000."))])


class AliasForm(FlaskForm):
    """An alias address (new ones only) and where it delivers."""

    # The state the form was filled from, to notice a change made meanwhile by someone else.
    version = HiddenField()

    local_part = StringField(_l("Address"), validators=[Length(max=64, message=_l("Use at most 64 characters."))])
    catch_all = BooleanField(_l("Catch-all: every address of the domain that is not a mailbox or another alias"))
    # Where the domain has alias domains: the address may be written on one of them (checked by the view).
    on_domain = SelectField(_l("On the domain"), choices=[], validate_choice=False)
    destinations = TextAreaField(
        _l("Delivers to"), description=_l("One address per line."),
        validators=[Length(max=100_000, message=_l("This list is too long."))],
    )


class AliasDomainForm(FlaskForm):
    """A domain name to link as an alias domain of the domain shown."""

    name = StringField(_l("Alias domain"), validators=[DataRequired(_l("Type a domain name.")),
                                                       Length(max=253, message=_l("Use at most 253 characters."))])


class SendAsForm(FlaskForm):
    """A mailbox of the domain that may send as the alias shown."""

    mailbox = StringField(_l("Mailbox"), validators=[DataRequired(_l("Type the mailbox's address.")),
                                                     Length(max=254, message=_l("Use at most 254 characters."))])


class AliasDomainStateForm(FlaskForm):
    """Enable or disable an alias domain (the button says which)."""

    active = HiddenField()


class DeleteDomainForm(FlaskForm):
    """Deleting a domain asks for its name typed again."""

    confirm = StringField(
        _l("Type the domain name to confirm"), validators=[DataRequired(_l("Type the domain name."))]
    )


class GrantRoleForm(FlaskForm):
    """A role to give: to which mailbox, which role, and in which domain."""

    address = StringField(
        _l("Mailbox"),
        validators=[DataRequired(_l("Enter the mailbox's address.")), Length(max=254, message=_l("Too long."))],
    )
    role = SelectField(
        _l("Role"),
        choices=[SelectChoice("domain-admin", _l("domain admin")), SelectChoice("helpdesk", _l("helpdesk")),
                 SelectChoice("superadmin", _l("superadmin"))],
    )
    domain = StringField(
        _l("Domain"), description=_l("Needed for a domain admin; for helpdesk, empty means every domain."),
        validators=[Length(max=253, message=_l("Use at most 253 characters."))],
    )


class AuditFilterForm(FlaskForm):
    """Filters of the audit log (a GET form: nothing changes, so no CSRF token)."""

    class Meta:
        csrf = False

    actor = StringField(_l("Who"), description=_l("The full address, or cli."),
                        validators=[Optional(), Length(max=254, message=_l("Use at most 254 characters."))])
    target = StringField(_l("Concerning"), description=_l("A full address or domain name."),
                         validators=[Optional(), Length(max=254, message=_l("Use at most 254 characters."))])
    action = SelectField(_l("What"), choices=[SelectChoice("", _l("anything"))]
                         + [SelectChoice(key, label) for key, label in ACTIONS.items()], default="")
    since = DateField(_l("From (UTC)"), validators=[Optional()], format="%Y-%m-%d")
    until = DateField(_l("To (UTC, inclusive)"), validators=[Optional()], format="%Y-%m-%d")
    sort = SelectField(_l("Order"), choices=sort_choices(AUDIT_SORTS),
                       default="newest")

    def validate_actor(self, field):
        _printable(field)

    def validate_target(self, field):
        _printable(field)

    def validate_since(self, field):
        if field.data and field.data.year > 9998:
            raise ValidationError(_("Use a date before the year 9999."))

    def validate_until(self, field):
        if field.data and field.data.year > 9998:
            raise ValidationError(_("Use a date before the year 9999."))
        if field.data and self.since.data and field.data < self.since.data:
            raise ValidationError(_("The end of the range is before its start."))


def _printable(field):
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in field.data or ""):
        raise ValidationError(_("This contains control characters."))
