"""Helpdesk: look up a mailbox, reset its password, unlock, disable or enable it."""

from .views import bp

__all__ = ["bp"]
