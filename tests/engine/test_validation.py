"""Bad input is refused where it is given, with a clear error, and leaves nothing behind."""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

import pytest

import dataflows as df
from tests.engine.conftest import MakeApp, step_named, worker


async def finish(app: df.Dataflows, workflow_id: str, data: dict[str, Any] | None = None) -> df.Run:
    async with worker(app):
        run_id = await app.start(workflow_id, data or {})
        return await app.wait_for_run(run_id, timeout=10)


def refused(call: Callable[[], object], error: type[Exception]) -> bool:
    """Whether ``call()`` raises ``error`` at once, before anything could be awaited."""
    try:
        pending = call()
    except error as exc:
        assert isinstance(exc, ValueError)
        return True
    if inspect.iscoroutine(pending):
        pending.close()  # accepted by mistake: fail on the assertion, not on a warning
    return False


def calling(calls: list[Any], value: Any) -> Callable[[], Any]:
    def fn() -> Any:
        calls.append(1)
        return value

    return fn


# -- step names ------------------------------------------------------------------------------------

BAD_NAMES: list[Any] = [
    "",
    None,
    5,
    b"bytes",
    "x" * 201,
    "line\nbreak",
    "tab\there",
    "nul\x00",
    "del\x7f",
    "c1\x85",
]


async def test_invalid_step_names_raise_at_the_call_and_record_nothing(app: df.Dataflows) -> None:
    errors: list[tuple[str, Any]] = []
    calls: list[Any] = []

    @app.workflow("names")
    async def names(event: df.Event, step: df.Step) -> list[Any]:
        for bad in BAD_NAMES:
            checks: list[tuple[str, Callable[[], object]]] = [
                ("run", partial(step.run, bad, calling(calls, 1))),
                ("sleep", partial(step.sleep, bad, "1s")),
                ("send_event", partial(step.send_event, bad, "thing/happened", {})),
            ]
            for method, call in checks:
                if refused(call, df.InvalidStepName):
                    errors.append((method, bad))
        # The longest allowed name, and any printable Unicode, are fine.
        return [await step.run("x" * 200, lambda: 1), await step.run("étape 🚀 #1", lambda: 2)]

    run = await finish(app, "names")

    assert run.status == "completed" and run.result == [1, 2]
    assert errors == [(m, bad) for bad in BAD_NAMES for m in ("run", "sleep", "send_event")]
    assert issubclass(df.InvalidStepName, ValueError)
    assert calls == []
    assert [s.key for s in run.steps] == ["x" * 200, "étape 🚀 #1"]


# -- step results ----------------------------------------------------------------------------------


def circular() -> list[Any]:
    loop: list[Any] = []
    loop.append(loop)
    return loop


@pytest.mark.parametrize(
    ("value", "detail"),
    [
        (object(), "not JSON-serializable"),
        ({1, 2}, "not JSON-serializable"),
        (b"raw", "not JSON-serializable"),
        (datetime(2024, 1, 1, tzinfo=UTC), "not JSON-serializable"),
        (circular(), "not JSON-serializable"),
        (math.nan, "not JSON-serializable"),
        ({"total": math.inf}, "not JSON-serializable"),
        ([-math.inf], "not JSON-serializable"),
    ],
    ids=["object", "set", "bytes", "datetime", "circular", "nan", "inf", "-inf"],
)
async def test_unstorable_step_result_fails_the_step_without_recording_it(
    app: df.Dataflows, value: Any, detail: str
) -> None:
    calls: list[Any] = []
    caught: list[df.StepFailed] = []

    @app.workflow("unstorable")
    async def unstorable(event: df.Event, step: df.Step) -> str:
        try:
            await step.run("result", calling(calls, value))
        except df.StepFailed as exc:
            caught.append(exc)
        return "handled"

    run = await finish(app, "unstorable")

    assert run.status == "completed"
    assert len(calls) == 1, "retrying cannot make the value storable"
    [exc] = caught
    assert exc.error_type == "PayloadError"
    assert "the result of step 'result'" in exc.error_message and detail in exc.error_message
    info = step_named(run, "result")
    assert (info.status, info.output) == ("failed", None)


async def test_oversized_step_result_fails_clearly_and_nothing_is_truncated(
    make_app: MakeApp,
) -> None:
    app = make_app(max_payload_bytes=1000)
    caught: list[df.StepFailed] = []
    fits = "y" * 990  # 992 bytes as JSON

    @app.workflow("sizes")
    async def sizes(event: df.Event, step: df.Step) -> int:
        try:
            await step.run("big", lambda: "x" * 2000)
        except df.StepFailed as exc:
            caught.append(exc)
        return len(await step.run("fits", lambda: fits))

    run = await finish(app, "sizes")

    assert run.status == "completed" and run.result == 990
    [exc] = caught
    assert exc.error_type == "PayloadTooLarge"
    assert "2002 bytes" in exc.error_message and "1000-byte limit" in exc.error_message
    big = step_named(run, "big")
    assert (big.status, big.output, big.attempts) == ("failed", None, 1)
    assert step_named(run, "fits").output == fits


async def test_awkward_strings_in_step_results_round_trip(app: df.Dataflows) -> None:
    value = {"nul": "a\x00b", "surrogate": "\ud800", "emoji": "🚀", "quote": "\"'\\"}

    @app.workflow("strings")
    async def strings(event: df.Event, step: df.Step) -> bool:
        return bool(await step.run("odd", lambda: value) == value)

    run = await finish(app, "strings")

    assert run.status == "completed" and run.result is True
    assert step_named(run, "odd").output == value


# -- workflow results --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "error_type"),
    [({"when": datetime(2024, 1, 1, tzinfo=UTC)}, "PayloadError"), ("z" * 2000, "PayloadTooLarge")],
    ids=["not-json", "too-large"],
)
async def test_unstorable_workflow_result_fails_the_run(
    make_app: MakeApp, result: Any, error_type: str
) -> None:
    app = make_app(max_payload_bytes=1000)

    @app.workflow("bad-result")
    async def bad_result(event: df.Event, step: df.Step) -> Any:
        await step.run("fine", lambda: 1)
        return result

    run = await finish(app, "bad-result")

    assert run.status == "failed" and run.result is None
    assert run.error is not None and run.error["type"] == error_type
    assert "the workflow's result" in run.error["message"]
    assert step_named(run, "fine").status == "completed"


# -- event data ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        [1, 2],
        "text",
        None,
        42,
        {"k": "a\x00b"},
        {"k\x00": 1},
        {"deep": [{"x": "\x00"}]},
        {"k": "\ud800"},
        {"\udfff": 1},
        {"n": math.nan},
        {"n": math.inf},
        {"o": object()},
        {"big": "b" * 2000},
    ],
    ids=[
        "list",
        "str",
        "none",
        "int",
        "nul-value",
        "nul-key",
        "nul-nested",
        "surrogate-value",
        "surrogate-key",
        "nan",
        "inf",
        "object",
        "too-large",
    ],
)
async def test_invalid_event_data_is_refused_and_nothing_is_stored(
    make_app: MakeApp, data: Any
) -> None:
    app = make_app(max_payload_bytes=1000)

    @app.workflow("listener", trigger=df.on_event("order/created"))
    async def listener(event: df.Event, step: df.Step) -> None: ...

    with pytest.raises(df.PayloadError):
        await app.send("order/created", data, id="evt-1")
    if data is not None:  # app.start(workflow_id) with no data means {}
        with pytest.raises(df.PayloadError):
            await app.start("listener", data)

    assert await app.list_runs() == []
    again = await app.send("order/created", {"ok": True}, id="evt-1")
    assert not again.duplicate, "the refused event was not stored under its id"
    assert len(again.run_ids) == 1


# -- durations -------------------------------------------------------------------------------------------

BAD_DURATIONS: list[Any] = ["", "5", "soon", "5x", "1h 30m", "-5s", True, math.nan, math.inf, [1]]


async def test_invalid_durations_raise_at_the_call(app: df.Dataflows) -> None:
    errors: list[tuple[str, Any]] = []
    calls: list[Any] = []

    @app.workflow("durations")
    async def durations(event: df.Event, step: df.Step) -> str:
        for bad in [*BAD_DURATIONS, None]:
            if refused(partial(step.sleep, "nap", bad), df.InvalidDuration):
                errors.append(("sleep", bad))
            if bad is not None and refused(  # timeout=None means no timeout
                partial(step.run, "work", calling(calls, 1), timeout=bad), df.InvalidDuration
            ):
                errors.append(("run", bad))
        return "done"

    run = await finish(app, "durations")

    assert run.status == "completed" and run.result == "done"
    assert errors == [(m, bad) for bad in BAD_DURATIONS for m in ("sleep", "run")] + [
        ("sleep", None)
    ]
    assert calls == [] and run.steps == ()
    for bad in BAD_DURATIONS:
        with pytest.raises(df.InvalidDuration):
            df.RetryAfterError(bad)
    with pytest.raises(df.InvalidDuration):
        app.workflow("timed", timeout="a while")


async def test_wait_for_event_requires_a_timeout(app: df.Dataflows) -> None:
    """No run waits forever by accident: ``timeout`` must be given (``None`` is an explicit "no
    limit"), and omitting it fails at the call, before anything is recorded."""
    seen: list[str] = []

    @app.workflow("forgetful")
    async def forgetful(event: df.Event, step: df.Step) -> str:
        wait: Any = step.wait_for_event
        try:
            wait("approval", "approval/decided")
        except TypeError as exc:
            seen.append(str(exc))
        return "done"

    run = await finish(app, "forgetful")

    assert run.status == "completed" and run.steps == ()
    assert len(seen) == 1 and "timeout" in seen[0]
