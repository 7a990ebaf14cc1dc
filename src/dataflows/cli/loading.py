"""Loading ``APP`` for a command: :func:`dataflows.loading.load_app` with command-line errors.

A spec that names no app is a usage error (:class:`AppLoadError`, exit code 2). An exception
raised by the app's own code while it is imported propagates from :func:`load_app`; commands load
through :func:`load_app_for_command`, which shows that traceback with the user's frames only (the
import machinery's are noise).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from typing import IO, Any

import click

from dataflows import loading
from dataflows.app import Dataflows
from dataflows.errors import InvalidAppSpec


class AppLoadError(click.UsageError):
    """``APP`` names no importable Dataflows app."""


class AppImportFailed(click.ClickException):
    """``APP``'s own code raised while it was imported: its traceback, the user's frames only."""

    exit_code = 2

    def __init__(self, spec: str, exc: BaseException) -> None:
        super().__init__(
            f"cannot load APP {spec!r}: its code raised {type(exc).__name__} while it was "
            "imported (traceback above)"
        )
        tb = traceback.TracebackException.from_exception(exc)
        self.traceback = "".join(_only_user_frames(tb).format())

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(self.traceback, file=file or sys.stderr, nl=False)
        super().show(file)


def load_app_for_command(spec: str) -> Dataflows:
    """:func:`load_app`, with an exception from the app's own code as :class:`AppImportFailed`."""
    try:
        return load_app(spec)
    except click.ClickException:
        raise
    except Exception as exc:  # SyntaxError, ImportError, anything the module raised
        raise AppImportFailed(spec, exc) from None


#: Frames of these are the import machinery and the command line, not the user's code.
_MACHINERY = tuple(
    str(Path(module.__file__).parent) + os.sep
    for module in (click, importlib, sys.modules["dataflows"])
    if module.__file__
)


def _only_user_frames(tb: traceback.TracebackException) -> traceback.TracebackException:
    seen: set[int] = set()
    todo: list[traceback.TracebackException | None] = [tb]
    while todo:
        current = todo.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        frames = [f for f in current.stack if not _is_machinery(f.filename)]
        current.stack = traceback.StackSummary.from_list(frames)
        todo += [current.__cause__, current.__context__]
    return tb


def _is_machinery(filename: str) -> bool:
    return filename.startswith("<frozen ") or filename.startswith(_MACHINERY)


def load_app(spec: str) -> Dataflows:
    """:func:`dataflows.loading.load_app`; a spec that names no app raises :class:`AppLoadError`."""
    try:
        return loading.load_app(spec)
    except InvalidAppSpec as exc:
        raise AppLoadError(str(exc)) from None
