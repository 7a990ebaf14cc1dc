"""Find the app a command works on: ``module:attribute`` or ``path/to/file.py[:attribute]``.

Used by every command that takes ``APP`` and by the HTTP server's ``app_from_env()``. A module or
file that cannot be found, or that holds no :class:`~dataflows.Dataflows` app, raises
:class:`AppLoadError` with one clear sentence. An exception raised by the app's own code while it
is imported propagates from :func:`load_app`; commands load through :func:`load_app_for_command`,
which shows that traceback with the user's frames only (the import machinery's are noise).
"""

from __future__ import annotations

import importlib
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import click

from dataflows.app import Dataflows

DEFAULT_ATTRIBUTE = "app"


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
    """The :class:`Dataflows` app that ``spec`` names.

    ``spec`` is ``package.module[:attribute]`` (imported with the current directory on
    ``sys.path``) or ``path/to/file.py[:attribute]``. Without an attribute, the module's ``app``
    is used, else its only Dataflows instance. The attribute may be dotted (``module:obj.app``).
    """
    target, attribute = _split(spec)
    module = _import_file(target) if _is_path(target) else _import_module(target)
    return _find_app(module, attribute, target)


def _split(spec: str) -> tuple[str, str | None]:
    target, colon, attribute = spec.strip().rpartition(":")
    if not colon:
        return attribute, None
    if not target or not attribute:
        raise AppLoadError(f"invalid APP {spec!r}: use module:attribute or path/to/file.py")
    return target, attribute


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_module(name: str) -> ModuleType:
    if not name:
        raise AppLoadError("invalid APP: empty module name")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise AppLoadError(
                f"cannot import module {name!r}: no module named {missing!r} "
                f"(looked in {cwd} and on sys.path)"
            ) from None
        raise


def _import_file(target: str) -> ModuleType:
    path = Path(target).resolve()
    if not path.is_file():
        raise AppLoadError(f"cannot load APP: no such file {target!r}")
    if path.suffix != ".py":
        raise AppLoadError(f"cannot load APP: {target!r} is not a .py file")
    name, root = _module_name(path)
    loaded = sys.modules.get(name)
    if loaded is None:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        loaded = importlib.import_module(name)
    if not _is_module_of(loaded, path):
        where = getattr(loaded, "__file__", None) or "built in"
        raise AppLoadError(
            f"cannot load {target!r} as module {name!r}: another module of that name is "
            f"already imported ({where}); rename the file"
        )
    return loaded


def _module_name(path: Path) -> tuple[str, Path]:
    """The dotted name of ``path`` and the directory to import it from.

    A file inside packages (folders with ``__init__.py``) is imported as part of them, so its
    relative imports work.
    """
    parts = [] if path.stem == "__init__" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts), folder


def _is_module_of(module: ModuleType, path: Path) -> bool:
    file = getattr(module, "__file__", None)
    return file is not None and Path(file).resolve() == path


def _find_app(module: ModuleType, attribute: str | None, target: str) -> Dataflows:
    if attribute is not None:
        return _named_app(module, attribute, target)
    default = getattr(module, DEFAULT_ATTRIBUTE, None)
    if isinstance(default, Dataflows):
        return default
    found: dict[int, tuple[str, Dataflows]] = {}
    for name, value in vars(module).items():
        if isinstance(value, Dataflows):
            found.setdefault(id(value), (name, value))
    if len(found) == 1:
        return next(iter(found.values()))[1]
    if not found:
        raise AppLoadError(
            f"no Dataflows app in {target!r}: define `app = dataflows.Dataflows()` there, "
            f"or name the attribute as {target}:NAME"
        )
    names = ", ".join(sorted(name for name, _ in found.values()))
    raise AppLoadError(
        f"{target!r} has several Dataflows apps ({names}): choose one as {target}:NAME"
    )


def _named_app(module: ModuleType, attribute: str, target: str) -> Dataflows:
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AppLoadError(f"{target!r} has no attribute {attribute!r}") from None
    if not isinstance(value, Dataflows):
        raise AppLoadError(
            f"{target}:{attribute} is a {type(value).__name__}, not a dataflows.Dataflows app"
        )
    return value
