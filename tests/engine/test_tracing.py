"""OpenTelemetry spans: a trace per run across its attempts, a span per step attempt, sleep, wait
and invoke, links from intake and to child runs; nothing at all when spans are not recorded."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.sdk.trace.sampling import Decision, Sampler, SamplingResult
from opentelemetry.trace import Link, SpanKind, StatusCode
from opentelemetry.util.types import Attributes

import dataflows as df
from dataflows import tracing
from dataflows.child_runs import child_run_id
from tests.engine.conftest import wait_status, worker


class Switch(Sampler):
    """Records spans only while a test of this module runs: the provider is global, once set."""

    on = False

    def should_sample(
        self,
        parent_context: Context | None,
        trace_id: int,
        name: str,
        kind: SpanKind | None = None,
        attributes: Attributes = None,
        links: Sequence[Link] | None = None,
        trace_state: Any = None,
    ) -> SamplingResult:
        return SamplingResult(Decision.RECORD_AND_SAMPLE if self.on else Decision.DROP, attributes)

    def get_description(self) -> str:
        return "on while a tracing test runs"


_SWITCH = Switch()
_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """The spans recorded during the test."""
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider(sampler=_SWITCH)
        provider.add_span_processor(SimpleSpanProcessor(_EXPORTER))
        trace.set_tracer_provider(provider)
    _EXPORTER.clear()
    _SWITCH.on = True
    try:
        yield _EXPORTER
    finally:
        _SWITCH.on = False
        _EXPORTER.clear()


def named(spans: Sequence[ReadableSpan], name: str) -> list[ReadableSpan]:
    return sorted((s for s in spans if s.name == name), key=lambda s: s.start_time or 0)


def attrs(span: ReadableSpan | Event) -> dict[str, Any]:
    return dict(span.attributes or {})


async def test_a_run_is_one_trace_of_attempts_and_steps(
    app: df.Dataflows, spans: InMemorySpanExporter
) -> None:
    flaky_calls = 0

    def flaky() -> str:
        nonlocal flaky_calls
        flaky_calls += 1
        if flaky_calls == 1:
            raise ConnectionError("try again")
        return "ok"

    @app.workflow("double")
    async def double(event: df.Event, step: df.Step) -> Any:
        return await step.run("double", lambda: event.data["n"] * 2)

    @app.workflow("order")
    async def order(event: df.Event, step: df.Step) -> Any:
        await step.run("charge", flaky, retry=df.RetryPolicy(retries=2, initial=0.001))
        await step.sleep("nap", "10ms")
        await step.wait_for_event("approval", event="order/approved", timeout="1m")
        return await step.invoke("child", "double", {"n": 21})

    tracer = trace.get_tracer("tests")
    async with worker(app):
        with tracer.start_as_current_span("POST /workflows/order/runs") as start_request:
            run_id = await app.start("order")
        await wait_status(app, run_id, "waiting")
        with tracer.start_as_current_span("POST /events") as event_request:
            await app.send("order/approved", {})
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "completed", run.error
    child_id = child_run_id(run_id, "child")
    got = spans.get_finished_spans()
    root = tracing.run_root(run_id)
    assert root.trace_id == int(run_id, 16)

    # The attempts at the run, one trace: until the wait, until the child finishes (none when
    # the child finished before the invoke looked), to the end.
    attempts = named(got, "run order")
    assert [attrs(s)["dataflows.outcome"] for s in attempts] in (
        ["suspended", "suspended", "completed"],
        ["suspended", "completed"],
    )
    for number, span in enumerate(attempts):
        assert span.context is not None and span.context.trace_id == root.trace_id
        assert span.parent is not None and span.parent.span_id == root.span_id
        assert attrs(span)["dataflows.run_id"] == run_id
        assert attrs(span)["dataflows.workflow_id"] == "order"
        assert attrs(span)["dataflows.attempt"] >= number + 1
    first, second = attempts[:2]

    def parent_of(span: ReadableSpan) -> int | None:
        return None if span.parent is None else span.parent.span_id

    def span_id(span: ReadableSpan) -> int:
        assert span.context is not None
        value: int = span.context.span_id
        return value

    # The retried step: one span per attempt, the failed one with its error.
    failed, succeeded = named(got, "step.run charge")
    for number, span in enumerate((failed, succeeded), start=1):
        assert parent_of(span) == span_id(first)
        assert attrs(span) == {
            "dataflows.run_id": run_id,
            "dataflows.workflow_id": "order",
            "dataflows.step_key": "charge",
            "dataflows.attempt": number,
        }
    assert failed.status.status_code is StatusCode.ERROR
    assert [e.name for e in failed.events] == ["exception"]
    assert attrs(failed.events[0])["exception.type"] == "ConnectionError"
    assert succeeded.status.status_code is StatusCode.UNSET

    (nap,) = named(got, "step.sleep nap")
    assert parent_of(nap) == span_id(first)
    assert attrs(nap)["dataflows.step_key"] == "nap"

    (approval,) = named(got, "step.wait_for_event approval")
    assert parent_of(approval) == span_id(first)
    assert attrs(approval)["dataflows.suspended"] is True
    assert attrs(approval)["dataflows.event_name"] == "order/approved"
    assert approval.status.status_code is StatusCode.UNSET

    # The invoke links to the child's trace; the child's attempt links back to the parent's.
    (invoke,) = named(got, "step.invoke child")
    assert parent_of(invoke) == span_id(second)
    assert attrs(invoke)["dataflows.child_run_id"] == child_id
    assert [link.context.trace_id for link in invoke.links] == [int(child_id, 16)]
    (child_attempt,) = named(got, "run double")
    assert child_attempt.context is not None
    assert child_attempt.context.trace_id == int(child_id, 16)
    assert [link.context.trace_id for link in child_attempt.links] == [root.trace_id]
    (child_step,) = named(got, "step.run double")
    assert parent_of(child_step) == span_id(child_attempt)

    # The requests that started and resumed the run link to its trace.
    for request in (start_request, event_request):
        assert isinstance(request, ReadableSpan)
        assert [(link.context.trace_id, link.context.span_id) for link in request.links] == [
            (root.trace_id, root.span_id)
        ]


async def test_a_failed_run_has_an_error_status(
    app: df.Dataflows, spans: InMemorySpanExporter
) -> None:
    @app.workflow("broken", retries=0)
    async def broken(event: df.Event, step: df.Step) -> None:
        await step.run("boom", lambda: 1 / 0)

    async with worker(app):
        run_id = await app.start("broken")
        await app.wait_for_run(run_id, timeout=10)
    got = spans.get_finished_spans()
    (attempt,) = named(got, "run broken")
    (boom,) = named(got, "step.run boom")
    assert attrs(attempt)["dataflows.outcome"] == "failed"
    for span in (attempt, boom):
        assert span.status.status_code is StatusCode.ERROR
        assert any(e.name == "exception" for e in span.events)


async def test_a_result_too_large_to_store_is_a_failed_run_in_its_trace(
    app: df.Dataflows, spans: InMemorySpanExporter
) -> None:
    app.max_payload = 1000

    @app.workflow("oversized")
    async def oversized(event: df.Event, step: df.Step) -> str:
        return "x" * 2000

    async with worker(app):
        run_id = await app.start("oversized")
        run = await app.wait_for_run(run_id, timeout=10)
    assert run.status == "failed"
    (attempt,) = named(spans.get_finished_spans(), "run oversized")
    assert attrs(attempt)["dataflows.outcome"] == "failed"
    assert attempt.status.status_code is StatusCode.ERROR


async def test_nothing_is_traced_without_a_recording_provider(app: df.Dataflows) -> None:
    @app.workflow("plain")
    async def plain(event: df.Event, step: df.Step) -> int:
        return int(await step.run("one", lambda: 1))

    assert tracing.start_run("r", "plain", 1, None) is None
    async with worker(app):
        run = await app.wait_for_run(await app.start("plain"), timeout=10)
    assert run.status == "completed"


def test_the_engine_runs_without_opentelemetry(tmp_path: Any) -> None:
    """With ``opentelemetry`` not importable, runs execute and nothing is traced."""
    program = f"""
import sys
sys.modules["opentelemetry"] = None  # as if it were not installed
import dataflows as df
from dataflows import tracing

app = df.Dataflows("sqlite:///{tmp_path}/db.sqlite")

@app.workflow("plain")
async def plain(event, step):
    return await step.run("one", lambda: 1)

async def main():
    async with app.worker(poll_interval=0.02):
        run = await app.wait_for_run(await app.start("plain"), timeout=10)
    await app.close()
    assert run.status == "completed", run.error
    assert tracing.tracer() is None

import asyncio
asyncio.run(main())
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr


def test_a_provider_configured_after_the_worker_started_records(tmp_path: Any) -> None:
    """Until something imports ``opentelemetry.trace`` the engine does not load it (nothing can
    record spans); a provider configured later records the runs after it."""
    program = f"""
import sys
import dataflows as df

app = df.Dataflows("sqlite:///{tmp_path}/db.sqlite")

@app.workflow("plain")
async def plain(event, step):
    return await step.run("one", lambda: 1)

async def main():
    async with app.worker(poll_interval=0.02):
        first = await app.wait_for_run(await app.start("plain"), timeout=10)
        assert first.status == "completed", first.error
        assert not any(m.startswith("opentelemetry") for m in sys.modules)

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        second = await app.wait_for_run(await app.start("plain"), timeout=10)
    await app.close()
    names = sorted(span.name for span in exporter.get_finished_spans())
    assert names == ["run plain", "step.run one"], names
    assert dict(exporter.get_finished_spans()[-1].attributes)["dataflows.run_id"] == second.id

import asyncio
asyncio.run(main())
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.stdout.strip() == "ok", done.stderr
