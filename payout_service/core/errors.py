"""Domain errors: one base, one subclass per kind of answer a caller gets. Pure.

Callers below the gRPC edge raise and catch these by meaning; `api/errors.py` is the one place
that turns a kind into a status code with details. Each error carries what the caller needs to
fix the request (the field and the rule, the subject of a refused precondition), never a secret.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class FieldViolation:
    field: str
    description: str


class PayoutServiceError(Exception):
    """Base of every error the service answers a caller with (anything else is internal)."""


class InvalidArgument(PayoutServiceError):
    """The request itself is wrong: each violation names the field and the rule."""

    violations: list[FieldViolation]

    @property
    def message(self) -> str:
        return str(self)


class ValidationFailed(InvalidArgument):
    def __init__(self, violations: list[FieldViolation]) -> None:
        super().__init__("; ".join(f"{v.field}: {v.description}" for v in violations))
        self.violations = violations

    @property
    def message(self) -> str:
        return f"invalid request: {self}"


class NotFoundError(PayoutServiceError):
    """The named thing does not exist."""


class PermissionDenied(PayoutServiceError):
    """The caller is known but may not do this (an approver approving its own payout)."""


class Conflict(PayoutServiceError):
    """The request collides with what already exists (an idempotency key used differently)."""

    violations: list[FieldViolation]


class FailedPrecondition(PayoutServiceError):
    """The request is valid but the current state or a configured limit refuses it.

    `kind` says which rule (STATE, CHANNEL, MAX_GAS, ...), `subject` what it applies to.
    """

    kind = "STATE"
    subject = ""

    @property
    def description(self) -> str:
        return str(self)


class PreconditionFailed(FailedPrecondition):
    """A refused precondition described where it is found."""

    def __init__(self, subject: str, description: str, kind: str = "STATE") -> None:
        super().__init__(description)
        self.subject, self.kind = subject, kind
        self._description = description

    @property
    def description(self) -> str:
        return self._description


class Unavailable(PayoutServiceError):
    """A dependency is down: nothing is known, the caller retries later."""

    dependency = "a dependency"


class ScreeningDenied(FailedPrecondition):
    """The destination is refused by the allow and deny lists (core/screening.py). `field` is
    where the request named it: `destination`, or `items[2].destination` in a bulk."""

    kind = "SCREENING"

    def __init__(self, reason: str, field: str = "destination") -> None:
        super().__init__(f"{field}: {reason}")
        self.subject, self.reason = field, reason

    def at(self, field: str) -> ScreeningDenied:
        return ScreeningDenied(self.reason, field)
