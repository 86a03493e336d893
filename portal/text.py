"""One rule for the free text the portal stores (names, reasons): a single line of printable characters.

Pages, commands and the CSV import all use it, so what a page accepts the export
writes and the import reads back. Printable as Python means it: no control or
format characters (ESC, CR, LF, TAB, NUL, the bidirectional overrides such as
U+202E), no line or paragraph separators, no space but the plain one.
"""

from __future__ import annotations

from wtforms.validators import ValidationError

from .i18n import _


def is_one_line(text: str) -> bool:
    """Whether ``text`` may be stored as a name or reason."""
    return text.isprintable()


def one_line(form, field) -> None:
    """WTForms validator: the field holds one line of printable characters."""
    if not is_one_line(field.data or ""):
        raise ValidationError(_("Write it on one line, without control characters."))
