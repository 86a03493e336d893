"""Self-service pages of a signed-in mailbox."""

from . import security  # noqa: F401 - registers the sign-in security pages on bp
from .views import bp

__all__ = ["bp"]
