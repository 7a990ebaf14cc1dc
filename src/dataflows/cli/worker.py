"""``dataflows worker APP``: run a worker, supervised when it recycles itself."""

from __future__ import annotations

import os
import sys
from typing import Any

import click
from rich.text import Text

from dataflows.app import Dataflows
from dataflows.cli.banner import database_text, summary, workflows_text
from dataflows.cli.common import app_argument, friendly_errors, start_app, stdout
from dataflows.cli.logs import log_level_option, setup_logging
from dataflows.cli.progress import Progress
from dataflows.cli.supervisor import SUPERVISOR_ENV, Supervisor, watch_supervisor
from dataflows.runner import Helper, run_worker
from dataflows.worker import WorkerOptions

POSITIVE = click.FloatRange(min=0, min_open=True)


@click.command()
@app_argument(required=True)
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=10,
    show_default=True,
    help="Runs executed at once.",
)
@click.option(
    "--max-runs",
    type=click.IntRange(min=1),
    default=None,
    help="Recycle the worker process after this many runs.",
)
@click.option(
    "--max-rss-mb",
    type=POSITIVE,
    default=None,
    help="Recycle the worker process once its memory (RSS) exceeds this many MiB.",
)
@click.option(
    "--lease-seconds",
    type=POSITIVE,
    default=30.0,
    show_default=True,
    help="A run's lease; renewed every third of it.",
)
@click.option(
    "--shutdown-grace",
    type=click.FloatRange(min=0),
    default=30.0,
    show_default=True,
    help="Seconds in-flight steps get to finish when stopping.",
)
@click.option(
    "--poll-interval",
    type=POSITIVE,
    default=1.0,
    show_default=True,
    help="Seconds between polls for runnable runs (the backstop for notifications).",
)
@click.option(
    "--max-recoveries",
    type=click.IntRange(min=0),
    default=3,
    show_default=True,
    help="Crash recoveries before a run is quarantined as failed.",
)
@click.option(
    "--status-interval",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds between status lines (0: none).",
)
@click.option(
    "--no-supervisor",
    is_flag=True,
    help="Run in this process even when recycling; exit with code 3 when the worker recycles.",
)
@log_level_option
@click.pass_context
def worker(
    ctx: click.Context,
    app_spec: str,
    concurrency: int,
    max_runs: int | None,
    max_rss_mb: float | None,
    lease_seconds: float,
    shutdown_grace: float,
    poll_interval: float,
    max_recoveries: int,
    status_interval: float,
    no_supervisor: bool,
    log_level: str,
    log_format: str,
) -> None:
    """Run a worker that executes APP's runs until SIGTERM or Ctrl-C.

    The first signal stops claiming runs and gives in-flight steps --shutdown-grace seconds to
    finish; a second one exits at once. With --max-runs or --max-rss-mb the worker runs in a
    child process that is replaced by a fresh one each time it recycles itself (or crashes).
    """
    setup_logging(log_level, log_format)
    # A supervised child's supervisor checked the database; the child waits out an outage.
    app = start_app(app_spec, check=SUPERVISOR_ENV not in os.environ)
    options = WorkerOptions(
        concurrency=concurrency,
        lease_seconds=lease_seconds,
        poll_interval=poll_interval,
        shutdown_grace=shutdown_grace,
        max_recoveries=max_recoveries,
        max_runs=max_runs,
        max_rss_mb=max_rss_mb,
    )
    supervise = (max_runs is not None or max_rss_mb is not None) and not no_supervisor
    if SUPERVISOR_ENV not in os.environ:
        _print_banner(app, app_spec, options, supervise)
    if supervise:
        argv = [sys.executable, "-m", "dataflows.cli", "worker", app_spec, "--no-supervisor"]
        argv += _option_args(ctx.params)
        ctx.exit(Supervisor(argv).run())
    helpers: list[Helper] = []
    if status_interval > 0:
        helpers.append(lambda worker: Progress(worker, status_interval).run())
    if SUPERVISOR_ENV in os.environ:
        helpers.append(watch_supervisor)
    with friendly_errors():
        code = run_worker(app, options, helpers=helpers, wait_for_store=True)
    ctx.exit(code)


def _option_args(params: dict[str, Any]) -> list[str]:
    args: list[str] = []
    for name, value in params.items():
        if name in ("app_spec", "no_supervisor") or value is None:
            continue
        args += [f"--{name.replace('_', '-')}", str(value)]
    return args


def _print_banner(app: Dataflows, spec: str, options: WorkerOptions, supervise: bool) -> None:
    limits = [f"{options.max_runs} runs"] if options.max_runs else []
    limits += [f"{options.max_rss_mb:g} MiB RSS"] if options.max_rss_mb else []
    rows: list[tuple[str, str | Text]] = [
        ("database", database_text(app)),
        ("workflows", workflows_text(app)),
        ("concurrency", str(options.concurrency)),
        (
            "timing",
            f"lease {options.lease_seconds:g}s · poll {options.poll_interval:g}s · "
            f"shutdown grace {options.shutdown_grace:g}s",
        ),
    ]
    if limits:
        how = "supervised: a fresh process replaces it" if supervise else "exits with code 3"
        rows.append(("recycle", f"after {' or '.join(limits)} ({how})"))
    rows.append(("stop", f"Ctrl-C or SIGTERM to pid {os.getpid()}; twice to exit at once"))
    stdout().print(summary(f"dataflows worker  {spec}", rows))
