"""Administration: for now, the domains an admin is responsible for."""

from __future__ import annotations

from flask import Blueprint
from flask import render_template
from flask_login import current_user

from ..access import admin_required
from ..db import get_db
from ..queries import roles

bp = Blueprint("admin", __name__, url_prefix="/admin")


@bp.get("/")
@admin_required
def index():
    """The domains in the admin's scope, with their mailbox and alias counts."""
    return render_template(
        "admin/index.html", domains=roles.domains_in_scope(get_db(), current_user.mailbox_id), roles=current_user.roles
    )
