"""Command tests: a CliRunner bound to the test's store, and a store seeded with runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from click.testing import CliRunner, Result

import dataflows as df
from dataflows.cli import cli
from tests.cli import sample_app
from tests.pg import DbTarget

ENV_CLEARED = ("DATAFLOWS_APP", "DATAFLOWS_DATABASE_URL", "DATAFLOWS_API_KEYS")
SAMPLE_APP = "tests.cli.sample_app"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_CLEARED:
        monkeypatch.delenv(name, raising=False)


@dataclass
class Cli:
    """Invokes ``dataflows`` in process with ``--database-url``/``--schema`` of the test's store."""

    db: DbTarget

    def store_args(self) -> list[str]:
        args = ["--database-url", self.db.url]
        return args + (["--schema", self.db.schema] if self.db.schema else [])

    def __call__(self, *args: str, input: str | None = None, code: int = 0) -> Result:
        result = CliRunner().invoke(cli, [*args, *self.store_args()], input=input)
        assert result.exit_code == code, (result.output, result.exception)
        if code == 0:
            assert result.exception is None
        return result


@pytest.fixture
def run_cli(db: DbTarget) -> Cli:
    return Cli(db)


def client(db: DbTarget) -> df.Dataflows:
    return sample_app.register(df.Dataflows(db.url, schema=db.schema or "dataflows"))


@dataclass
class Seeded:
    completed: str
    failed: str
    waiting: str


async def _seed(db: DbTarget) -> Seeded:
    app = client(db)
    async with app, app.worker(concurrency=4, poll_interval=0.05):
        ids = []
        for name, data in [("test/greet", {"name": "ada"}), ("test/fail", {}), ("test/wait", {})]:
            ids.append((await app.send(name, data)).run_ids[0])
            await asyncio.sleep(0.01)  # distinct creation times: a stable newest-first order
        await app.wait_for_run(ids[0], timeout=10)
        await app.wait_for_run(ids[1], timeout=10)
        await wait_for_status(app, ids[2], "waiting")
    return Seeded(*ids)


async def wait_for_status(app: df.Dataflows, run_id: str, status: str, timeout: float = 10) -> None:
    async with asyncio.timeout(timeout):
        while True:  # the client API has no "status changed" notification to await
            if (await app.get_run(run_id)).status == status:
                return
            await asyncio.sleep(0.02)


@pytest.fixture
def seeded(db: DbTarget) -> Seeded:
    """Three runs of the sample app: one completed, one failed, one waiting for an event."""
    return asyncio.run(_seed(db))


def statuses(runs: Sequence[dict[str, Any]]) -> dict[str, str]:
    return {run["id"]: run["status"] for run in runs}
