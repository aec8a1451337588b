"""One error hierarchy for the whole platform.

Every refusal names what was refused and why, in one line, so the CLI and the magics can print
``str(error)`` and nothing else. ``exit_code`` lets the CLI map each kind to a distinct status.
"""

from __future__ import annotations


class NexmlError(Exception):
    """Base of every error nexml-ext raises on purpose."""

    exit_code = 1


class InvalidInput(NexmlError, ValueError):
    """The caller's input is malformed or out of range; nothing was changed."""

    exit_code = 2


class NotFound(NexmlError, LookupError):
    """The named object does not exist."""

    exit_code = 3


class PermissionDenied(NexmlError):
    """The principal's role or relation to the object does not allow the action."""

    exit_code = 4


class AuthenticationFailed(PermissionDenied):
    """No valid identity: unknown, expired or revoked token, or a disabled user."""

    exit_code = 5


class InvalidTransition(NexmlError):
    """The lifecycle does not allow this move from the object's current state."""

    exit_code = 6


class IncompleteCompliance(InvalidTransition):
    """Mandatory compliance sections are missing or incomplete."""

    exit_code = 7


class Conflict(NexmlError):
    """Somebody else changed the object first (duplicate name, concurrent decision)."""

    exit_code = 8


class IntegrityError(NexmlError):
    """Stored evidence does not match its recorded hash: artifact, manifest or audit chain."""

    exit_code = 9


class SchemaOutOfDate(NexmlError):
    """The database schema is not at the revision this code needs."""

    exit_code = 10


class NotInitialised(NexmlError):
    """No store exists yet under the configured home or database URL."""

    exit_code = 11


class ReportFailed(NexmlError):
    """A report template raised while the platform ran it; the report is recorded as failed."""

    exit_code = 12


class DeliveryFailed(NexmlError):
    """An alert could not be delivered to its sink (webhook, email); the reason names no secret."""

    exit_code = 13
