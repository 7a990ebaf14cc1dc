"""A private PostgreSQL server that a test may stop and start again (same port, same data).

Built on the embedded launcher in tests/pg.py; never touches the shared server on :5432. The data
directory, binaries and the user to run them as are read back from the running server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psutil
import psycopg

from tests.pg import PgServer, start_embedded


class PrivatePostgres:
    def __init__(self) -> None:
        self._server: PgServer = start_embedded()
        self.url = self._server.url
        port = urlsplit(self.url).port
        assert port is not None
        self.port = port
        with psycopg.connect(self.url, autocommit=True) as conn:
            row = conn.execute("SHOW data_directory").fetchone()
        assert row is not None
        self.data = Path(row[0])
        postmaster = int((self.data / "postmaster.pid").read_text().split()[0])
        self.bindir = Path(os.readlink(f"/proc/{postmaster}/exe")).parent
        self._run: dict[str, Any] = {"env": {**os.environ, "LC_ALL": "C"}, "cwd": self.data.parent}
        owner = self.data.stat()
        if os.geteuid() == 0 and owner.st_uid != 0:  # postgres refuses to run as root
            self._run.update(user=owner.st_uid, group=owner.st_gid, extra_groups=[])

    def _ctl(self, *args: str) -> None:
        cmd = [str(self.bindir / "pg_ctl"), "-D", str(self.data), *args]
        # Output to a file, not a pipe: the postmaster would inherit a pipe and keep us waiting.
        out_path = self.data.parent / "faults-ctl.out"
        with open(out_path, "a") as out:
            done = subprocess.run(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                timeout=60,
                **self._run,
            )
        if done.returncode != 0:
            raise RuntimeError(f"pg_ctl {args[-1]} failed:\n{out_path.read_text()}")

    def stop(self, mode: str = "fast") -> None:
        self._ctl("-m", mode, "-w", "stop")

    def start(self) -> None:
        # The options the launcher started it with (tests/pg.py), so it comes back identical.
        opts = (
            f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.data}"
            " -c fsync=off -c full_page_writes=off"
        )
        self._ctl("-l", str(self.data / "server.log"), "-o", opts, "-w", "start")

    def freeze(self) -> None:
        """SIGSTOP the server and every backend: connections stay open, nothing answers."""
        for process in self._processes():
            process.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        for process in self._processes():
            process.send_signal(signal.SIGCONT)

    def _processes(self) -> list[psutil.Process]:
        postmaster = psutil.Process(int((self.data / "postmaster.pid").read_text().split()[0]))
        return [postmaster, *postmaster.children(recursive=True)]

    def close(self) -> None:
        """Stop the server if it runs and delete its data directory."""
        with contextlib.suppress(RuntimeError):  # already stopped: the data dir goes all the same
            self._server.stop()
