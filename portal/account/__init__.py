"""Self-service pages of a signed-in mailbox."""

from .views import bp

__all__ = ["bp"]
