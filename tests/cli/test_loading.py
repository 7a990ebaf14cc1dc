"""``load_app``: module specs, file paths, attribute rules and the errors for each mistake."""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import dataflows as df
from dataflows.cli.loading import AppLoadError, load_app

_names = itertools.count()

APP_SOURCE = "import dataflows as df\n{body}\n"


@pytest.fixture(autouse=True)
def _restore_imports(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setattr(sys, "path", list(sys.path))
    before = set(sys.modules)
    yield
    for name in set(sys.modules) - before:
        del sys.modules[name]


def write(folder: Path, body: str, *, name: str | None = None) -> Path:
    """A module with a unique name (modules stay imported by name)."""
    path = folder / f"{name or f'cli_load_{next(_names)}'}.py"
    path.write_text(APP_SOURCE.format(body=body))
    return path


def test_file_path_with_the_default_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, "app = df.Dataflows()\nother = 1")
    assert isinstance(load_app(str(path)), df.Dataflows)


def test_file_path_with_an_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, "app = df.Dataflows()\nflows = df.Dataflows()")
    flows = load_app(f"{path}:flows")
    assert flows is sys.modules[path.stem].flows
    assert load_app(f"{path}:app") is sys.modules[path.stem].app


def test_the_only_instance_is_found_without_an_attribute(tmp_path: Path) -> None:
    path = write(tmp_path, "flows = df.Dataflows()\nalias = flows\napp = 'not an app'")
    assert load_app(str(path)) is sys.modules[path.stem].flows


def test_module_spec_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "service = type('S', (), {'app': df.Dataflows()})")
    monkeypatch.chdir(tmp_path)
    assert load_app(f"{path.stem}:service.app") is sys.modules[path.stem].service.app


def test_file_inside_a_package_keeps_its_relative_imports(tmp_path: Path) -> None:
    package = tmp_path / f"pkg_{next(_names)}"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "helpers.py").write_text("NAME = 'from-helpers'\n")
    write(package, "from .helpers import NAME\napp = df.Dataflows()", name="flows")
    app = load_app(str(package / "flows.py"))
    module = sys.modules[f"{package.name}.flows"]
    assert app is module.app and module.NAME == "from-helpers"


@pytest.mark.parametrize(
    ("body", "spec_suffix", "message"),
    [
        ("x = 1", "", "no Dataflows app in"),
        ("a = df.Dataflows()\nb = df.Dataflows()", "", "several Dataflows apps (a, b)"),
        ("app = df.Dataflows()", ":missing", "has no attribute 'missing'"),
        ("app = df.Dataflows()\nthing = 3", ":thing", "is a int, not a dataflows.Dataflows app"),
    ],
)
def test_attribute_errors(tmp_path: Path, body: str, spec_suffix: str, message: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(AppLoadError) as info:
        load_app(f"{path}{spec_suffix}")
    assert message in info.value.message


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("no_such_module_here:app", "cannot import module 'no_such_module_here'"),
        ("no_such_pkg_x.sub", "no module named 'no_such_pkg_x'"),
        ("missing/file.py", "no such file"),
        (":app", "invalid APP"),
        ("module:", "invalid APP"),
    ],
)
def test_spec_errors(spec: str, message: str) -> None:
    with pytest.raises(AppLoadError) as info:
        load_app(spec)
    assert message in info.value.message


def test_not_a_python_file(tmp_path: Path) -> None:
    (tmp_path / "app.txt").write_text("")
    with pytest.raises(AppLoadError, match="is not a .py file"):
        load_app(str(tmp_path / "app.txt"))


def test_a_file_shadowed_by_an_imported_module(tmp_path: Path) -> None:
    path = write(tmp_path, "app = df.Dataflows()", name="json")
    with pytest.raises(AppLoadError, match="another module of that name is already imported"):
        load_app(str(path))


def test_errors_in_the_apps_own_code_propagate(tmp_path: Path) -> None:
    broken = write(tmp_path, "import not_installed_dependency_xyz\napp = df.Dataflows()")
    with pytest.raises(ModuleNotFoundError, match="not_installed_dependency_xyz"):
        load_app(str(broken))
    failing = write(tmp_path, "raise RuntimeError('bug in the app')")
    with pytest.raises(RuntimeError, match="bug in the app"):
        load_app(str(failing))
