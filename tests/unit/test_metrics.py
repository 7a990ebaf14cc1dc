"""The engine's Prometheus metrics: counted in plain numbers until ``prometheus_client`` is loaded,
then in its default registry with everything counted so far.

Each test runs in a fresh interpreter: this one has ``prometheus_client`` loaded already.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any


def run(program: str, env: dict[str, str] | None = None) -> Any:
    """Run ``program`` in a new interpreter; what it prints on its last line, as JSON."""
    done = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **(env or {})},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


COUNT = """
import json, sys, time
from dataflows import metrics

before = time.time()
metrics.step_outcomes("wf", "run", "completed").inc()
metrics.step_outcomes("wf", "run", "completed").inc(2)
metrics.step_outcomes("wf", "sleep", "waiting").inc()
metrics.step_durations("wf").observe(0.003)
metrics.step_durations("wf").observe(7.5)
metrics.step_durations("wf").observe(400)
metrics.runs_started(["wf", "wf", "other"])
metrics.run_finished("wf", "completed")
metrics.webhook_rejected("github")
loaded = "prometheus_client" in sys.modules
counted = {",".join(k): v for k, v in metrics.counts("STEPS").items()}
"""

READ = """
def value(name, **labels):
    return REGISTRY.get_sample_value(name, labels)

print(json.dumps({
    "loaded_while_counting": loaded,
    "counted": counted,
    "steps": value("dataflows_steps_total", workflow="wf", kind="run", status="completed"),
    "waits": value("dataflows_steps_total", workflow="wf", kind="sleep", status="waiting"),
    "started": value("dataflows_runs_started_total", workflow="wf"),
    "started_other": value("dataflows_runs_started_total", workflow="other"),
    "finished": value("dataflows_runs_finished_total", workflow="wf", status="completed"),
    "rejected": value("dataflows_webhook_verifications_failed_total", source="github"),
    "buckets": [
        value("dataflows_step_duration_seconds_bucket", workflow="wf", le=le)
        for le in ("0.001", "0.005", "5.0", "10.0", "300.0", "+Inf")
    ],
    "count": value("dataflows_step_duration_seconds_count", workflow="wf"),
    "sum": value("dataflows_step_duration_seconds_sum", workflow="wf"),
    "created_after_start": value("dataflows_steps_created", workflow="wf", kind="run",
                                 status="completed") >= before,
    "counts_after": {",".join(k): v for k, v in metrics.counts("STEPS").items()},
}))
"""

EXPECTED = {
    "counted": {"wf,run,completed": 3.0, "wf,sleep,waiting": 1.0},
    "steps": 3.0,
    "waits": 1.0,
    "started": 2.0,
    "started_other": 1.0,
    "finished": 1.0,
    "rejected": 1.0,
    "buckets": [0.0, 1.0, 1.0, 2.0, 2.0, 3.0],
    "count": 3.0,
    "sum": 407.503,
    "created_after_start": True,
    "counts_after": {"wf,run,completed": 3.0, "wf,sleep,waiting": 1.0},
}


def test_what_was_counted_before_prometheus_client_is_imported_is_in_its_registry() -> None:
    got = run(COUNT + "from prometheus_client import REGISTRY\n" + READ)
    assert got.pop("loaded_while_counting") is False
    assert got == EXPECTED


def test_importing_a_submodule_first_makes_the_metrics_too() -> None:
    program = COUNT + (
        "from prometheus_client.exposition import generate_latest\n"
        "from prometheus_client import REGISTRY\n"
        "text = generate_latest(REGISTRY).decode()\n"
        'assert \'dataflows_steps_total{kind="run",status="completed",workflow="wf"} 3.0\' '
        "in text, text\n"
    )
    got = run(program + READ)
    assert got.pop("loaded_while_counting") is False
    assert got == EXPECTED


def test_reading_the_metrics_loads_them() -> None:
    program = COUNT + (
        "registry = metrics.registry()\n"
        "from prometheus_client import REGISTRY\n"
        "assert registry is REGISTRY\n"
        "assert metrics.RUNS_FINISHED.collect()[0].name == 'dataflows_runs_finished'\n"
    )
    got = run(program + READ)
    assert got.pop("loaded_while_counting") is False
    assert got == EXPECTED


def test_counts_after_the_switch_add_to_those_before() -> None:
    program = COUNT + (
        "import prometheus_client\n"
        "metrics.step_outcomes('wf', 'run', 'completed').inc()\n"
        "metrics.step_durations('wf').observe(0.5)\n"
        "from prometheus_client import REGISTRY\n"
    )
    got = run(program + READ)
    assert got["steps"] == 4.0
    assert got["counts_after"]["wf,run,completed"] == 4.0
    assert got["count"] == 4.0 and got["sum"] == 408.003
    assert got["buckets"] == [0.0, 1.0, 2.0, 3.0, 3.0, 4.0]


def test_a_process_that_loaded_prometheus_client_first_has_the_metrics_at_once() -> None:
    program = """
import json
from prometheus_client import REGISTRY, generate_latest
from dataflows import metrics
text = generate_latest(REGISTRY).decode()
print(json.dumps(["# TYPE dataflows_runs_finished_total counter" in text,
                  "# TYPE dataflows_step_duration_seconds histogram" in text]))
"""
    assert run(program) == [True, True]


def test_server_processes_count_in_the_shared_folder(tmp_path: Path) -> None:
    """With the multiprocess folder set, counts go to its files at once: another process reads
    them."""
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    counting = """
import json, sys
from dataflows import metrics
loaded = "prometheus_client" in sys.modules
metrics.run_finished("wf", "failed")
metrics.run_finished("wf", "failed")
print(json.dumps(loaded))
"""
    assert run(counting, env) is True
    reading = """
import json
from dataflows import metrics
print(json.dumps(metrics.registry().get_sample_value(
    "dataflows_runs_finished_total", {"workflow": "wf", "status": "failed"})))
"""
    assert run(reading, env) == 2.0
