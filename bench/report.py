"""The results as one table in the terminal, and as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

#: (measure, figure, label, format) in the order the table shows them.
ROWS = [
    ("sequential", "steps_per_s", "sequential: steps/s", "{:,.0f}"),
    ("sequential", "ms_per_step", "sequential: ms/step", "{:.3f}"),
    ("sequential", "insert_ms", "  bare INSERT round trip, ms", "{:.3f}"),
    ("sequential", "ratio_to_insert", "  ms/step ÷ INSERT", "{:.2f}×"),
    ("sequential", "local_ms_per_step", "  local activities (Temporal), ms/step", "{:.3f}"),
    ("sequential", "client_cpu_ms_per_step", "  client/worker process CPU, ms/step", "{:.3f}"),
    ("sequential", "server_cpu_ms_per_step", "  server CPU (PostgreSQL or own), ms/step", "{:.3f}"),
    ("throughput", "steps_per_s", "throughput: steps/s", "{:,.0f}"),
    ("throughput", "runs_per_s", "throughput: runs/s", "{:,.0f}"),
    ("event", "p50_ms", "event → resumed: p50 ms", "{:.1f}"),
    ("event", "p99_ms", "event → resumed: p99 ms", "{:.1f}"),
    ("sleep", "p50_ms", "1 s sleep lateness: p50 ms", "{:.1f}"),
    ("sleep", "p99_ms", "1 s sleep lateness: p99 ms", "{:.1f}"),
    ("sleep", "min_ms", "  earliest (negative = early)", "{:.1f}"),
    ("memory", "count", "memory: runs suspended", "{:,.0f}"),
    ("memory", "rss_idle_mb", "  worker RSS idle, MiB", "{:.0f}"),
    ("memory", "rss_suspended_mb", "  worker RSS all suspended, MiB", "{:.0f}"),
    ("memory", "rss_peak_mb", "  worker RSS peak, MiB", "{:.0f}"),
    ("memory", "server_rss_suspended_mb", "  own server RSS all suspended, MiB", "{:.0f}"),
    ("memory", "all_resumed", "  all resumed", "{}"),
    ("webhook", "max_accepted_rps", "webhook: max 202/s", "{:,.0f}"),
    ("webhook", "max_p99_ms", "  p99 ms at max", "{:.1f}"),
    ("webhook", "fixed_accepted_rps", "webhook: 202/s at fixed load", "{:,.0f}"),
    ("webhook", "fixed_p50_ms", "  p50 ms at fixed load", "{:.1f}"),
    ("webhook", "fixed_p99_ms", "  p99 ms at fixed load", "{:.1f}"),
    ("webhook", "all_accepted_stored", "  every 202 stored", "{}"),
    ("failover", "p50_ms", "failover: kill -9 → resumed elsewhere, p50 ms", "{:.0f}"),
    ("failover", "p99_ms", "  p99 ms", "{:.0f}"),
    ("failover", "max_ms", "  slowest, ms", "{:.0f}"),
    ("failover", "samples", "  kills", "{:.0f}"),
    ("budget", "limit_per_s", "step budget: limit, calls/s", "{:,.0f}"),
    ("budget", "achieved_per_s", "  achieved, calls/s", "{:,.1f}"),
    ("budget", "used_ratio", "  share of the budget used", "{:.1%}"),
    ("budget", "max_in_window", "  most calls in any 1 s", "{:.0f}"),
    ("budget", "never_above", "  never above the limit", "{}"),
    ("limited", "unlimited_steps_per_s", "throughput without a limit: steps/s", "{:,.0f}"),
    ("limited", "limited_steps_per_s", "  with Concurrency(10) over 100 keys", "{:,.0f}"),
    ("limited", "limited_ratio", "  limited ÷ unlimited", "{:.0%}"),
]


def cell(summary: dict[str, Any] | None, fmt: str) -> str:
    if summary is None:
        return ""
    median, low, high = summary["median"], summary["min"], summary["max"]
    if isinstance(median, bool):
        return "yes" if median else "NO"
    text = fmt.format(median)
    if len(summary["values"]) > 1 and low != high:
        text += f" ({fmt.format(low)}–{fmt.format(high)})"
    return text


def figure(results: dict[str, Any], backend: str, system: str, measure: str, key: str) -> Any:
    entry = results.get(backend, {}).get(system, {}).get(measure)
    if not entry or "figures" not in entry:
        return None
    return entry["figures"].get(key)


def failure(results: dict[str, Any], backend: str, system: str, measure: str) -> str:
    entry = results.get(backend, {}).get(system, {}).get(measure)
    if not entry or "failed" not in entry:
        return ""
    text: str = entry["failed"]
    text = text if text.startswith("failed to start") else f"failed: {text}"
    return text if len(text) <= 70 else text[:67] + "..."


def table(document: dict[str, Any]) -> Table:
    systems: list[str] = document["options"]["systems"]
    results = document["results"]
    grid = Table(
        title="dataflows benchmark — median (min–max) of "
        f"{document['options']['repeat']} repetitions",
        show_lines=False,
    )
    grid.add_column("backend")
    grid.add_column("measure")
    for system in systems:
        grid.add_column(system, justify="right")
    for backend in results:
        shown: set[str] = set()
        for measure, key, label, fmt in ROWS:
            cells = [cell(figure(results, backend, s, measure, key), fmt) for s in systems]
            if measure not in shown:  # a failure stands in its measure's first row
                shown.add(measure)
                cells = [
                    c or failure(results, backend, s, measure)
                    for c, s in zip(cells, systems, strict=True)
                ]
            if measure == "throughput" and key == "steps_per_s":
                cells = [
                    c + _best(results, backend, s) for c, s in zip(cells, systems, strict=True)
                ]
            if any(cells):
                grid.add_row(backend, label, *cells)
    return grid


def _best(results: dict[str, Any], backend: str, system: str) -> str:
    entry = results.get(backend, {}).get(system, {}).get("throughput")
    if not entry or "best_concurrency" not in entry:
        return ""
    best = entry["best_concurrency"]
    return f" @{best or 'unlimited'}"  # 0: DBOS's queue without a worker_concurrency limit


def print_report(document: dict[str, Any]) -> None:
    console = Console(width=max(120, Console().width))
    console.print(table(document))
    for error in document["errors"]:
        console.print(
            f"[red]error[/red] {error['backend']}/{error['system']}/{error['measure']}: "
            f"{error['message']}",
            markup=True,
            highlight=False,
        )


def write_json(document: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=2) + "\n")
