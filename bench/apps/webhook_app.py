"""The app ``dataflows serve`` runs in the webhook-intake measure.

The Azure DevOps source is enabled with HTTP Basic credentials ``bench:secret``; each accepted
delivery stores its event and starts one run of ``on-work-item`` (no worker runs during the
measure, so intake is measured alone). The store comes from ``BENCH_DATABASE_URL`` and
``BENCH_SCHEMA``.
"""

from __future__ import annotations

import os

import dataflows as df
from dataflows.sources.azure_devops import AzureDevOpsSource

CREDENTIALS = "bench:secret"


def make_app(url: str, schema: str) -> df.Dataflows:
    app = df.Dataflows(url, schema=schema, retention=None)
    app.add_source(AzureDevOpsSource(CREDENTIALS))

    @app.workflow("on-work-item", trigger=df.on_event("azure_devops/workitem.created"))
    async def on_work_item(event: df.Event, step: df.Step) -> None:
        return None

    return app


app = make_app(os.environ.get("BENCH_DATABASE_URL", ""), os.environ.get("BENCH_SCHEMA", "bench"))
