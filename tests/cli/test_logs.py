"""``--log-format json``: one JSON object per record, with the run's fields when it is about one."""

from __future__ import annotations

import json
import logging

from dataflows.cli.logs import JsonFormatter
from dataflows.context import _current, log_fields


def record(message: str, **extra: object) -> logging.LogRecord:
    made = logging.LogRecord("dataflows.worker", logging.WARNING, __file__, 1, message, (), None)
    made.__dict__.update(extra)
    return made


def test_a_plain_line() -> None:
    line = json.loads(JsonFormatter().format(record("worker started")))
    assert set(line) == {"ts", "level", "logger", "message"}
    assert (line["level"], line["logger"], line["message"]) == (
        "WARNING",
        "dataflows.worker",
        "worker started",
    )
    assert line["ts"].endswith("+00:00")


def test_a_line_about_a_run_carries_its_fields() -> None:
    fields = log_fields("r1", "copy", "create-task", 2, "ValueError: no")
    line = json.loads(JsonFormatter().format(record("step failed", **fields)))
    assert line | fields == line


def test_a_line_logged_in_a_step_function_names_the_step() -> None:
    token = _current.set(("r1", "charge", 3, "order"))
    try:
        line = json.loads(JsonFormatter().format(record("calling the API")))
    finally:
        _current.reset(token)
    assert (line["run_id"], line["workflow_id"], line["step_key"], line["attempt"]) == (
        "r1",
        "order",
        "charge",
        3,
    )


def test_an_exception_is_one_field() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        made = record("failed")
        made.exc_info = sys.exc_info()
    line = json.loads(JsonFormatter().format(made))
    assert "ValueError: boom" in line["exception"]
