"""Wall time and CPU time over a measured stretch: this process's, and the PostgreSQL server's.

The server runs on the benchmark's machine, so its CPU is read from ``/proc``: user + system time
of every process named ``postgres`` (backends, WAL writer, checkpointer), process by process. A
backend that exits inside the stretch takes its time with it (other clients' connections closing
cannot make the figure negative); the systems keep their connections open while they run, so the
figure is a floor, to within one clock tick per process.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

_TICK = os.sysconf("SC_CLK_TCK")


#: A process, by pid and start time (so a reused pid is another process), and its CPU ticks.
Ticks = dict[tuple[int, int], int]


def server_cpu_ticks(name: str = "postgres") -> Ticks | None:
    """CPU ticks used so far by each of this machine's processes called ``name`` (PostgreSQL's
    by default; a peer's own server otherwise); ``None`` if none."""
    ticks: Ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # gone meanwhile
        name_end = stat.rfind(")")
        if stat[stat.find("(") + 1 : name_end] != name:
            continue
        fields = stat[name_end + 2 :].split()
        # utime and stime (fields 14 and 15 of stat), start time (field 22)
        ticks[(int(entry.name), int(fields[19]))] = int(fields[11]) + int(fields[12])
    return ticks or None


def server_cpu_between(before: Ticks, after: Ticks) -> float:
    """CPU seconds the server's processes used between two readings: each process alive at the
    end, less what it had used at the start (a process started meanwhile counts whole)."""
    return sum(t - before.get(key, 0) for key, t in after.items()) / _TICK


class Stretch:
    """``start()`` once (later calls are ignored: replays), ``stop()`` at the end (the last
    call counts); ``figures()`` gives the wall seconds and both CPU times between them."""

    def __init__(self, server: bool, name: str = "postgres") -> None:
        self._server = server
        self._name = name
        self._start: tuple[Ticks | None, float, float] | None = None
        self._stop: tuple[float, float, Ticks | None] | None = None

    def start(self) -> None:
        if self._start is None:
            server = server_cpu_ticks(self._name) if self._server else None
            self._start = (server, time.process_time(), time.perf_counter())

    def stop(self) -> None:
        wall, client = time.perf_counter(), time.process_time()
        self._stop = (wall, client, server_cpu_ticks(self._name) if self._server else None)

    def figures(self) -> dict[str, Any]:
        assert self._start is not None and self._stop is not None, "stretch not run"
        server0, client0, wall0 = self._start
        wall1, client1, server1 = self._stop
        out: dict[str, Any] = {"seconds": wall1 - wall0, "client_cpu_seconds": client1 - client0}
        if server0 is not None and server1 is not None:
            out["server_cpu_seconds"] = server_cpu_between(server0, server1)
        return out
