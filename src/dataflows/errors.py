"""Every error dataflows raises, in one hierarchy.

User-facing errors derive from :class:`DataflowsError`. The exception that suspends a run derives
from ``BaseException`` so ``except Exception:`` in user code can never swallow it. The errors a
step function raises on purpose to steer its retries (``NonRetriableError``, ``RetryAfterError``)
are part of the retry rules, in :mod:`dataflows.retry`. This module imports nothing from
dataflows: every other module may use it.
"""

from __future__ import annotations

from typing import Any


class DataflowsError(Exception):
    """Base class of the errors dataflows raises."""

    code = "dataflows_error"


class InvalidDuration(DataflowsError, ValueError):
    """A duration that is not in the grammar ``500ms``, ``30s``, ``5m``, ``24h``, ``7d``, ``2w``."""

    code = "invalid_duration"

    def __init__(self, value: object) -> None:
        super().__init__(
            f"invalid duration {value!r}: use a number of seconds, a timedelta, or units "
            "ms, s, m, h, d, w such as '500ms', '30s', '1h30m', '7d'"
        )
        self.value = value


class InvalidStepName(DataflowsError, ValueError):
    """A step name that is empty, too long, or contains control characters."""

    code = "invalid_step_name"


class PayloadError(DataflowsError, ValueError):
    """A value that cannot be stored: not JSON-serializable, or over the size cap."""

    code = "invalid_payload"


class PayloadTooLarge(PayloadError):
    """A step result or event payload larger than the configured cap."""

    code = "payload_too_large"

    def __init__(self, what: str, size: int, limit: int) -> None:
        super().__init__(f"{what} is {size} bytes, over the {limit}-byte limit")
        self.size = size
        self.limit = limit


class WorkflowError(DataflowsError):
    """A problem with a workflow's registration or lookup."""

    code = "workflow_error"


class DuplicateWorkflow(WorkflowError, ValueError):
    code = "duplicate_workflow"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"a workflow with id {workflow_id!r} is already registered")
        self.workflow_id = workflow_id


class UnknownWorkflow(WorkflowError, LookupError):
    code = "unknown_workflow"

    def __init__(self, workflow_id: str) -> None:
        super().__init__(f"no workflow with id {workflow_id!r} is registered")
        self.workflow_id = workflow_id


class RunNotFound(DataflowsError, LookupError):
    code = "run_not_found"

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run with id {run_id!r}")
        self.run_id = run_id


class ScheduleNotFound(DataflowsError, LookupError):
    code = "schedule_not_found"

    def __init__(self, schedule_id: str) -> None:
        super().__init__(f"no schedule with id {schedule_id!r}")
        self.schedule_id = schedule_id


class InvalidRunState(DataflowsError):
    """An operation that does not apply to the run's current status."""

    code = "invalid_run_state"

    def __init__(self, run_id: str, status: str, operation: str) -> None:
        super().__init__(f"cannot {operation} run {run_id!r}: it is {status}")
        self.run_id = run_id
        self.status = status


class StepFailed(DataflowsError):
    """A step exhausted its retries (or raised :class:`NonRetriableError`).

    Raised into the workflow function, which may catch it and compensate. The cause is carried as
    text because it may have been raised in another process, days ago.
    """

    code = "step_failed"

    def __init__(self, step_key: str, error_type: str, message: str, traceback: str = "") -> None:
        super().__init__(f"step {step_key!r} failed: {error_type}: {message}")
        self.step_key = step_key
        self.error_type = error_type
        self.error_message = message
        self.traceback = traceback

    @classmethod
    def from_record(cls, step_key: str, error: dict[str, Any] | None) -> StepFailed:
        """From a failure as recorded (``type``, ``message``, ``traceback``)."""
        error = error or {}
        return cls(
            step_key,
            str(error.get("type", "Error")),
            str(error.get("message", "")),
            str(error.get("traceback", "")),
        )


class NonDeterminismError(DataflowsError):
    """Replay asked for a step in a way that contradicts the run's recorded history.

    ``step_key`` is the step the code asked for; ``recorded`` the recorded steps the replay did
    not reach (a new step) or the step recorded under that key (another kind).
    """

    code = "non_determinism"

    def __init__(
        self, run_id: str, step_key: str, detail: str, recorded: tuple[str, ...] = ()
    ) -> None:
        super().__init__(f"run {run_id!r} diverged from its history at step {step_key!r}: {detail}")
        self.run_id = run_id
        self.step_key = step_key
        self.detail = detail
        self.recorded = recorded


class RunFailed(DataflowsError):
    """Raised by blocking helpers that expected a run to complete but it failed."""

    code = "run_failed"


class StoreError(DataflowsError):
    """A problem talking to the store."""

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached right now; the operation may be retried."""

    code = "store_unavailable"


class InvalidDatabaseURL(DataflowsError, ValueError):
    """A database URL of an unknown scheme, or a malformed SQLite URL."""

    code = "invalid_database_url"

    def __init__(self, url: str, hint: str) -> None:
        super().__init__(f"invalid database URL {url!r}: {hint}")
        self.url = url


class DatabaseUnreachable(StoreUnavailable):
    """No PostgreSQL server answered at the URL's address: refused, timed out, no socket."""

    code = "database_unreachable"

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(
            f"cannot reach PostgreSQL at {address} ({reason}) — is the server running?"
        )
        self.address = address
        self.reason = reason


class DatabaseRejected(StoreError):
    """The server answered but refuses this URL; trying again will not help."""

    code = "database_rejected"


class DatabaseNotFound(DatabaseRejected):
    code = "database_not_found"

    def __init__(self, database: str, address: str) -> None:
        super().__init__(
            f'PostgreSQL database "{database}" does not exist on {address} '
            f"(create it: createdb {database})"
        )
        self.database = database
        self.address = address


class DatabaseAuthFailed(DatabaseRejected):
    """A wrong password, a missing one, an unknown role, or no ``pg_hba.conf`` entry."""

    code = "database_auth_failed"

    def __init__(self, message: str, *, user: str, address: str) -> None:
        super().__init__(message)
        self.user = user
        self.address = address


class UnknownDatabaseHost(DatabaseRejected):
    code = "unknown_database_host"

    def __init__(self, host: str) -> None:
        super().__init__(f"cannot resolve the PostgreSQL host name {host!r}")
        self.host = host


class InvalidAppSpec(DataflowsError, ValueError):
    """An ``APP`` (``module:attribute`` or ``path/to/file.py[:attribute]``) that names no
    importable Dataflows app."""

    code = "invalid_app"


class MissingExtra(DataflowsError, ImportError):
    """A feature whose optional dependencies are not installed, e.g. PostgreSQL without
    ``dataflows-engine[postgres]``."""

    code = "missing_extra"

    def __init__(self, feature: str, extra: str, what: str) -> None:
        super().__init__(f"{feature} needs {what}: pip install 'dataflows-engine[{extra}]'")
        self.feature = feature
        self.extra = extra


class Suspend(BaseException):  # noqa: N818 - a control signal, not an error
    """Internal: unwinds the workflow function when a run must wait in the database."""


class WebhookError(DataflowsError):
    """A webhook request that cannot be accepted."""

    code = "invalid_webhook"


class WebhookUnauthorized(WebhookError):
    """The request's signature or credentials did not verify (HTTP 401)."""

    code = "invalid_signature"


class WebhookInvalid(WebhookError):
    """The request verified but is not a delivery the source understands (HTTP 422)."""

    code = "invalid_webhook"
