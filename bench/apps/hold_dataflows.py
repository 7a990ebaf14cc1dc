"""dataflows worker for the memory measure: runs that wait for an event each.

``python -m bench.apps.hold_dataflows URL SCHEMA CONCURRENCY`` runs a worker until SIGTERM.
"""

from __future__ import annotations

import sys

import dataflows as df


def make_app(url: str, schema: str) -> df.Dataflows:
    app = df.Dataflows(url, schema=schema, retention=None)

    @app.workflow("hold", trigger=df.on_event("bench/hold"))
    async def hold(event: df.Event, step: df.Step) -> None:
        await step.wait_for_event("release", "bench/release", match="data.i", timeout="1d")

    return app


if __name__ == "__main__":
    url, schema, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.exit(make_app(url, schema).run_worker(concurrency=concurrency))
