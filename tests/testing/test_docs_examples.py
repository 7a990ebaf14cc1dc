"""docs/testing.md's examples, run as written: its blocks make one project, whose tests pass."""

from __future__ import annotations

import re
from pathlib import Path

from tests.testing.test_plugin import run_pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "testing.md"
BLOCK = re.compile(r"```(?:python|toml)\n# ([\w.]+\.(?:py|toml))\n(.*?)```", re.S)


def project_files() -> dict[str, str]:
    """The doc's blocks that start with a file name comment, joined per file in order."""
    files: dict[str, str] = {}
    for name, body in BLOCK.findall(DOC.read_text()):
        files[name] = files.get(name, "") + body + "\n"
    return files


def test_the_docs_project_passes(tmp_path: Path) -> None:
    files = project_files()
    assert sorted(files) == ["app.py", "conftest.py", "pyproject.toml", "test_app.py"]
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    done = run_pytest(tmp_path, ".")
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "6 passed" in output, output
