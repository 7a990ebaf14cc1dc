"""Finding the app to run: ``module:attribute`` or ``path/to/file.py[:attribute]``.

The command line and the HTTP server's ``app_from_env()`` both load ``APP`` this way. A module or
file that cannot be found, or that holds no :class:`~dataflows.Dataflows` app, raises
:class:`~dataflows.errors.InvalidAppSpec` with one clear sentence; an exception raised by the
app's own code while it is imported propagates as it is.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

from dataflows.app import Dataflows
from dataflows.errors import InvalidAppSpec

DEFAULT_ATTRIBUTE = "app"


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
        raise InvalidAppSpec(f"invalid APP {spec!r}: use module:attribute or path/to/file.py")
    return target, attribute


def _is_path(target: str) -> bool:
    return target.endswith(".py") or "/" in target or os.sep in target


def _import_module(name: str) -> ModuleType:
    if not name:
        raise InvalidAppSpec("invalid APP: empty module name")
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if missing and (name == missing or name.startswith(missing + ".")):
            raise InvalidAppSpec(
                f"cannot import module {name!r}: no module named {missing!r} "
                f"(looked in {cwd} and on sys.path)"
            ) from None
        raise


def _import_file(target: str) -> ModuleType:
    path = Path(target).resolve()
    if not path.is_file():
        raise InvalidAppSpec(f"cannot load APP: no such file {target!r}")
    if path.suffix != ".py":
        raise InvalidAppSpec(f"cannot load APP: {target!r} is not a .py file")
    name, root = _module_name(path)
    loaded = sys.modules.get(name)
    if loaded is None:
        if str(root) not in sys.path:
            sys.path.insert(0, str(root))
        loaded = importlib.import_module(name)
    if not _is_module_of(loaded, path):
        where = getattr(loaded, "__file__", None) or "built in"
        raise InvalidAppSpec(
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
        raise InvalidAppSpec(
            f"no Dataflows app in {target!r}: define `app = dataflows.Dataflows()` there, "
            f"or name the attribute as {target}:NAME"
        )
    names = ", ".join(sorted(name for name, _ in found.values()))
    raise InvalidAppSpec(
        f"{target!r} has several Dataflows apps ({names}): choose one as {target}:NAME"
    )


def _named_app(module: ModuleType, attribute: str, target: str) -> Dataflows:
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise InvalidAppSpec(f"{target!r} has no attribute {attribute!r}") from None
    if not isinstance(value, Dataflows):
        raise InvalidAppSpec(
            f"{target}:{attribute} is a {type(value).__name__}, not a dataflows.Dataflows app"
        )
    return value
