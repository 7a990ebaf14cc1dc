"""A worker process loads only what its workflows use: no metrics exposition until something
imports ``prometheus_client``, no cron parsing without schedules, no OpenTelemetry until a tracer
provider can exist, no approvals, child runs, exports, webhook sources or blocking client.

The worker runs in a fresh interpreter (``app.run_worker``'s own path, stopped by SIGTERM) and
takes a run through sync and async steps, a sleep, a wait for an event and completion; the test
reads back which modules that process imported.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.pg import DbTarget

#: Modules a worker running such a run has no use for.
NOT_NEEDED = (
    "prometheus_client",
    "http.server",
    "wsgiref",
    "urllib.request",
    "croniter",
    "dateutil",
    "opentelemetry",
    "hashlib",
    "hmac",
    "secrets",
    "uuid",
    "dataflows.approvals",
    "dataflows.blocking",
    "dataflows.child_runs",
    "dataflows.replay",
    "dataflows.schedules",
    "dataflows.sources",
    "dataflows.http",
    "dataflows.cli",
)

_PROGRAM = """
import asyncio, json, os, signal, sys
import dataflows as df
from dataflows import metrics, runner
from dataflows.worker import WorkerOptions

url, schema = json.loads(sys.argv[1])
app = df.Dataflows(url, schema=schema)

@app.workflow("steps", trigger=df.on_event("test/go"))
async def steps(event, step):
    one = await step.run("sync", lambda: 1)
    async def two():
        return 2
    both = one + await step.run("async", two)
    await step.sleep("nap", "10ms")
    reply = await step.wait_for_event("reply", "test/reply", match="data.n", timeout="1m")
    return both + reply.data["n"]

result = {}

async def drive(worker):
    try:
        sent = await app.send("test/go", {"n": 5})
        [run_id] = sent.run_ids
        for _ in range(500):
            if (await app.get_run(run_id)).status == "waiting":
                break
            await asyncio.sleep(0.02)
        await app.send("test/reply", {"n": 5})
        run = await app.wait_for_run(run_id, timeout=30)
        result["run"] = [run.status, run.result]
        result["finished"] = {",".join(k): v for k, v in metrics.counts("RUNS_FINISHED").items()}
    except BaseException as exc:
        result["error"] = repr(exc)
        raise
    finally:
        os.kill(os.getpid(), signal.SIGTERM)

code = runner.run_worker(app, WorkerOptions(poll_interval=0.05), helpers=[drive])
result["code"] = code
result["modules"] = sorted(m for m, v in sys.modules.items() if v is not None)
print(json.dumps(result))
"""


def test_a_worker_process_imports_only_what_it_uses(db: DbTarget) -> None:
    done = subprocess.run(
        [sys.executable, "-c", _PROGRAM, json.dumps([db.url, db.schema or "dataflows"])],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["run"] == ["completed", 8], done.stderr
    assert report["finished"] == {"steps,completed": 1.0}
    assert report["code"] == 0
    unwanted = [m for m in report["modules"] for n in NOT_NEEDED if m == n or m.startswith(n + ".")]
    assert unwanted == []
