"""Domain errors. Each carries the HTTP status the API renders it with, in one handler."""

from __future__ import annotations

from typing import Any


class JobqError(Exception):
    status_code = 500
    detail = "internal error"

    def __init__(self, detail: Any = None, *, headers: dict[str, str] | None = None) -> None:
        if detail is not None:
            self.detail = detail
        self.headers = headers or {}
        super().__init__(str(self.detail))


class ConfigurationError(JobqError):
    detail = "invalid configuration"


class NotFound(JobqError):
    status_code = 404
    detail = "job not found"


class Conflict(JobqError):
    status_code = 409
    detail = "conflict"


class InvalidSubmission(JobqError):
    """Carries Pydantic-shaped error dicts: `[{"loc", "msg", "type"}]`."""

    status_code = 422

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__(errors)


class TooManyRequests(JobqError):
    status_code = 429
    detail = "too many requests"
    retry_after = 5


class Unavailable(JobqError):
    status_code = 503
    detail = "a dependency is unavailable, try again shortly"
    retry_after = 5


class InvalidToken(JobqError):
    status_code = 401
    detail = "invalid or missing token"


class StaleAttempt(JobqError):
    """A compare-and-set matched no row: the job moved on, or a newer attempt owns it."""

    status_code = 409
    detail = "the job is no longer in the expected state"


class DuplicateKind(JobqError):
    detail = "a job kind with this name is already registered"


# Raised by handlers (through the job context); never rendered over HTTP.
class JobCancelled(Exception):
    """The job was cancelled; handlers should let this propagate."""


class PermanentError(Exception):
    """Raise from a handler to fail the job at once, without retries."""
