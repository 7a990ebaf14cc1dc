"""A run as text, for the message of a failing assertion: status, wait, error, steps, attempts."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from dataflows.models import Run, StepInfo, error_line

#: Outputs and results longer than this are cut (the whole value is in ``env.run(run_id)``).
WIDTH = 160
#: The last lines of a failed run's traceback that are shown.
TRACEBACK_LINES = 8


def short(value: Any, width: int = WIDTH) -> str:
    try:
        text = json.dumps(value, ensure_ascii=False, default=str, sort_keys=True)
    except ValueError:
        text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def when(at: datetime | None, now: float | None = None) -> str:
    if at is None:
        return "-"
    text = at.isoformat(timespec="seconds")
    if now is not None:
        text += f" (in {_span(at.timestamp() - now)})" if at.timestamp() > now else " (due)"
    return text


def _span(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds / size:.4g}{unit}"
    return f"{seconds:.3g}s"


def describe_step(step: StepInfo, now: float | None = None) -> list[str]:
    line = f"{step.key:<24} {step.kind:<6} {step.status:<10} attempts={step.attempts}"
    if step.status == "completed" and step.kind in ("run", "invoke", "wait", "send"):
        line += f"  output={short(step.output)}"
    if step.error is not None:
        line += f"  error={error_line(step.error)}"
    if step.status in ("waiting", "retrying") and step.wake_at is not None:
        line += f"  wake_at={when(step.wake_at, now)}"
    lines = [line]
    for failed in step.attempt_errors:
        lines.append(f"    attempt {failed.attempt} failed: {error_line(failed.error)}")
    return lines


def describe_run(run: Run, now: float | None = None) -> str:
    """Several lines: the run, why it waits or how it failed, its steps, its failed attempts."""
    lines = [f"run {run.id} of workflow {run.workflow_id!r}: {run.status}"]
    if run.status == "waiting":
        lines.append(f"  waiting for: {run.wait_reason or '-'} until {when(run.wake_at, now)}")
    if run.status == "completed":
        lines.append(f"  result: {short(run.result)}")
    if run.error is not None:
        lines.append(f"  error: {error_line(run.error)}")
        step = run.error.get("step")
        if step:
            lines.append(f"  in step: {step}")
        trace = str(run.error.get("traceback") or "").rstrip().splitlines()
        if trace:
            lines.append("  traceback (last lines):")
            lines += [f"    {t}" for t in trace[-TRACEBACK_LINES:]]
    lines.append(f"  event: {run.event.name} {short(run.event.data)}")
    if run.steps:
        lines.append("  steps:")
        for step in run.steps:
            lines += [f"    {line}" for line in describe_step(step, now)]
    else:
        lines.append("  steps: none recorded")
    return "\n".join(lines)
