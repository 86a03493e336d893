"""Forms of the admin pages."""

from __future__ import annotations

from flask_wtf import FlaskForm
from wtforms import SelectChoice
from wtforms import SelectField
from wtforms import StringField
from wtforms.validators import Length
from wtforms.validators import ValidationError

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

    def validate_q(self, field):
        text = (field.data or "").strip()
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text):
            raise ValidationError("The search contains control characters.")
        if self.mode.data == "contains" and 0 < len(text) < MIN_SUBSTRING:
            raise ValidationError(f"Searching inside addresses needs at least {MIN_SUBSTRING} characters.")
