"""URL converters the portal's routes need beyond Flask's own."""

from __future__ import annotations

from werkzeug.routing import BaseConverter


class AliasAddressConverter(BaseConverter):
    """An alias address in a URL: its local part may hold "/" (RFC 5322 allows it; an alias names no folder),
    its domain never does, so ``.../aliases/<alias:source>/delete`` stays the delete route of ``source``."""

    regex = r"[^@]*@[^/@]+"  # the catch-all "@domain" too
    part_isolating = False  # the match may span "/"
