"""dataflows worker process for the two_workers measure: runs of trivial steps.

``python -m bench.apps.two_workers_dataflows URL SCHEMA CONCURRENCY`` runs ``app.run_worker``
until SIGTERM; the measure starts one or two of these, waits until each has registered
(``app.store.list_workers()``), then sends the runs and times until none is left unfinished.
"""

from __future__ import annotations

import sys

import dataflows as df


async def noop(i: int) -> int:
    return i


def make_app(url: str, schema: str) -> df.Dataflows:
    app = df.Dataflows(url, schema=schema, retention=None)

    @app.workflow("two_workers", trigger=df.on_event("bench/two_workers"))
    async def run_steps(event: df.Event, step: df.Step) -> int:
        steps: int = event.data["steps"]
        for i in range(steps):
            await step.run("step", noop, i)
        return steps

    return app


if __name__ == "__main__":
    url, schema, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.exit(make_app(url, schema).run_worker(concurrency=concurrency))
