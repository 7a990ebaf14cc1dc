"""``df.current_step()``: what a step function knows about the step it runs in."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class StepContext:
    run_id: str
    step_key: str
    attempt: int
    workflow_id: str

    @property
    def idempotency_key(self) -> str:
        """``"{run_id}:{step_key}"``: stable across retries and replays of this step."""
        return f"{self.run_id}:{self.step_key}"


#: The step being executed, as ``(run_id, step_key, attempt, workflow_id)``: a tuple, made for
#: every attempt at a step whether or not its function asks (a :class:`StepContext` is made when
#: it does).
_current: ContextVar[tuple[str, str, int, str] | None] = ContextVar(
    "dataflows_current_step", default=None
)


def step_context() -> StepContext | None:
    """The step being executed, or ``None`` outside a step function."""
    current = _current.get()
    return None if current is None else StepContext(*current)


def current_step() -> StepContext:
    """The step being executed; raises ``RuntimeError`` outside a step function."""
    ctx = step_context()
    if ctx is None:
        raise RuntimeError("df.current_step() is only available inside a step function")
    return ctx


#: The fields a log line about a run carries (``extra=`` of a logging call); JSON logs print them.
LOG_FIELDS = ("run_id", "workflow_id", "step_key", "attempt", "error")


def log_fields(
    run_id: str,
    workflow_id: str,
    step_key: str | None = None,
    attempt: int | None = None,
    error: str | None = None,
) -> dict[str, object]:
    """``extra=`` for a log line about a run (and a step of it): the fields JSON logs print."""
    fields: dict[str, object] = {"run_id": run_id, "workflow_id": workflow_id}
    if step_key is not None:
        fields["step_key"] = step_key
    if attempt is not None:
        fields["attempt"] = attempt
    if error is not None:
        fields["error"] = error
    return fields
