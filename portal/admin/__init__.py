"""Pages for domain admins and superadmins."""

from .views import bp

__all__ = ["bp"]
