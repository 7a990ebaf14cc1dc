"""Several processes opening one new SQLite file at once (workers started together on a fresh
database) all open it: none fails with "database is locked" while the file is put in WAL mode
and migrated."""

from __future__ import annotations

import asyncio
import multiprocessing
from pathlib import Path

from dataflows.store.sqlite import SQLiteStore

PROCESSES = 4
ROUNDS = 8


def _open(path: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    async def main() -> None:
        store = SQLiteStore(path)
        barrier.wait()
        await store.open()
        assert await store.get_run("nothing") is None
        await store.close()

    asyncio.run(main())


def test_processes_opening_a_new_file_together_all_open_it(tmp_path: Path) -> None:
    spawn = multiprocessing.get_context("spawn")
    for round_ in range(ROUNDS):
        path = str(tmp_path / f"round{round_}.db")
        barrier = spawn.Barrier(PROCESSES)
        processes = [spawn.Process(target=_open, args=(path, barrier)) for _ in range(PROCESSES)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(60)
        assert [p.exitcode for p in processes] == [0] * PROCESSES, f"round {round_}"
