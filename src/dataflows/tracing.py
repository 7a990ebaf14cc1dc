"""OpenTelemetry spans for runs and steps: only when ``opentelemetry-api`` is installed and a
tracer provider records them; otherwise nothing is created and a step pays one ``None`` check.

A run may be executed by several workers over days, so its trace cannot live in one process. Its
trace id is derived from the run id (the id itself when it is 32 hex digits, as dataflows' own
ids are), and every attempt at executing it (each claim by a worker) is a span whose parent is
the run's *root*: a span context with that trace id and a span id also derived from the run id.
The root is never exported itself; the attempts, each with its step, sleep and wait spans, meet
under it in one trace. Anything that knows a run id can therefore link to its trace without
reading the database: intake links the request span that started or resumed a run, and
``step.invoke`` and ``step.send_event`` link the runs they start.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import TYPE_CHECKING, Any

from dataflows.errors import Suspend

if TYPE_CHECKING:
    from opentelemetry.trace import Span, SpanContext, Tracer

__all__ = ["RunTrace", "link_current_span", "run_root", "start_run"]

TRACER_NAME = "dataflows"
#: The environment variable that has the OpenTelemetry API load a tracer provider by itself.
PROVIDER_ENV = "OTEL_PYTHON_TRACER_PROVIDER"

_unset: Any = object()
_tracer: Any = _unset  # Tracer | None once looked up
_api: Any = None  # the ``opentelemetry.trace`` module, once the tracer was found


def tracer() -> Tracer | None:
    """The ``dataflows`` tracer, or ``None`` without ``opentelemetry-api`` (looked up once; the
    API's proxy tracer follows a provider configured later).

    Until something has imported ``opentelemetry.trace`` (which configuring a provider does) or
    the environment names a provider, nothing in the process can record spans: then this is
    ``None`` without importing the API (half a MiB in every process), and asks again next time.
    """
    global _tracer, _api
    if _tracer is _unset:
        if "opentelemetry.trace" not in sys.modules and PROVIDER_ENV not in os.environ:
            return None
        try:
            from opentelemetry import trace
        except ImportError:
            _tracer = None
        else:
            _tracer, _api = trace.get_tracer(TRACER_NAME), trace
    result: Tracer | None = _tracer
    return result


def run_trace_id(run_id: str) -> int:
    """The run's trace id: the run id itself when it is 32 hex digits, else derived from it."""
    if len(run_id) == 32:
        try:
            value = int(run_id, 16)
        except ValueError:
            pass
        else:
            if value:
                return value
    return int.from_bytes(_digest(run_id)[:16], "big") or 1


def run_root(run_id: str) -> SpanContext:
    """The span context every attempt at executing ``run_id`` is a child of."""
    from opentelemetry.trace import SpanContext, TraceFlags

    span_id = int.from_bytes(_digest(run_id)[16:24], "big") or 1
    return SpanContext(
        run_trace_id(run_id), span_id, is_remote=True, trace_flags=TraceFlags(TraceFlags.SAMPLED)
    )


def _digest(run_id: str) -> bytes:
    import hashlib

    return hashlib.sha256(b"dataflows.run:" + run_id.encode("utf-8", "surrogatepass")).digest()


def link_current_span(run_ids: Iterable[str]) -> None:
    """Link the current span (the request that sent an event or started a run) to each run's
    trace. Nothing happens without a recording span."""
    if tracer() is None:
        return
    span = _api.get_current_span()  # called on every start: the module is looked up once
    if not span.is_recording():
        return
    for run_id in dict.fromkeys(run_ids):
        span.add_link(run_root(run_id), {"dataflows.run_id": run_id})


class RunTrace:
    """The span of one attempt at executing a run, and the spans of its steps."""

    def __init__(self, tracer: Tracer, span: Span, run_id: str, workflow_id: str) -> None:
        self._tracer = tracer
        self.span = span
        self._run_id = run_id
        self._workflow_id = workflow_id
        self._ended = False
        self._outcome = "abandoned"
        self._error: BaseException | None = None

    def activate(self) -> AbstractContextManager[Any]:
        """Make the attempt's span current (user code's own spans nest under it)."""
        from opentelemetry.trace import use_span

        return use_span(self.span, record_exception=False, set_status_on_exception=False)

    def step(
        self,
        kind: str,
        key: str,
        attempt: int = 1,
        attributes: Mapping[str, Any] | None = None,
        links: Iterable[str] = (),
    ) -> AbstractContextManager[Span]:
        """A span for one attempt at the step ``key`` (``kind`` is ``step.run``, ``step.sleep``
        …). It records the exception and an error status when the block raises, and
        ``dataflows.suspended`` when the block suspends the run."""
        from opentelemetry.trace import Link, set_span_in_context

        attrs: dict[str, Any] = {
            "dataflows.run_id": self._run_id,
            "dataflows.workflow_id": self._workflow_id,
            "dataflows.step_key": key,
            "dataflows.attempt": attempt,
        }
        if attributes:
            attrs.update(attributes)
        span = self._tracer.start_span(
            f"{kind} {key.split('#', 1)[0]}",
            context=set_span_in_context(self.span),
            attributes=attrs,
            links=[Link(run_root(r), {"dataflows.run_id": r}) for r in links],
            record_exception=False,
            set_status_on_exception=False,
        )
        return _covering(span)

    def outcome(self, outcome: str, error: BaseException | None = None) -> None:
        """What came of the attempt (completed, failed, suspended), set before its last write."""
        self._outcome, self._error = outcome, error

    def end(self) -> None:
        """End the attempt's span; an attempt that set no outcome was ``abandoned``."""
        if self._ended:
            return
        self._ended = True
        self.span.set_attribute("dataflows.outcome", self._outcome)
        if self._error is not None:
            _failed(self.span, self._error)
        self.span.end()


def start_run(
    run_id: str, workflow_id: str, attempt: int, parent_run_id: str | None
) -> RunTrace | None:
    """The span of this attempt at executing the run, or ``None`` when nothing records spans."""
    otel = tracer()
    if otel is None:
        return None
    from opentelemetry.trace import Link, NonRecordingSpan, SpanKind, set_span_in_context

    links = []
    if parent_run_id is not None:
        links.append(Link(run_root(parent_run_id), {"dataflows.run_id": parent_run_id}))
    span = otel.start_span(
        f"run {workflow_id}",
        context=set_span_in_context(NonRecordingSpan(run_root(run_id))),
        kind=SpanKind.CONSUMER,
        attributes={
            "dataflows.run_id": run_id,
            "dataflows.workflow_id": workflow_id,
            "dataflows.attempt": attempt,
        },
        links=links,
        record_exception=False,
        set_status_on_exception=False,
    )
    if not span.is_recording():
        return None
    return RunTrace(otel, span, run_id, workflow_id)


def step_span(
    trace: RunTrace | None,
    kind: str,
    key: str,
    attempt: int = 1,
    attributes: Mapping[str, Any] | None = None,
    links: Iterable[str] = (),
) -> AbstractContextManager[Any]:
    """:meth:`RunTrace.step`, or a shared no-op when the run is not traced."""
    if trace is None:
        return _NOTHING
    return trace.step(kind, key, attempt, attributes, links)


_NOTHING: AbstractContextManager[None] = nullcontext()


@contextmanager
def _covering(span: Span) -> Iterator[Span]:
    from opentelemetry.trace import use_span

    with use_span(span, end_on_exit=True, record_exception=False, set_status_on_exception=False):
        try:
            yield span
        except Suspend:
            span.set_attribute("dataflows.suspended", True)
            raise
        except Exception as exc:
            _failed(span, exc)
            raise


def _failed(span: Span, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
