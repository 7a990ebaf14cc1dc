"""The README's complete example and examples/quickstart.py, run as a new user runs them: pasted
into a file in an empty directory and started with ``python``, on the default SQLite store."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from dataflows.cli.loading import load_app

ROOT = Path(__file__).resolve().parents[2]
STEP_KEYS = ("fetch-item", "create-task", "approval", "cooldown")


def readme_example() -> str:
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## A complete example") :]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "the README's complete example has no python block"
    return found.group(1)


def run_python(script: Path, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DATAFLOWS_")}
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def assert_timeline(output: str) -> None:
    assert re.search(r"^run \S+ of copy-to-clickup: completed in \d", output, re.M), output
    assert '"approved": true' in output, output
    for key in STEP_KEYS:
        line = next((ln for ln in output.splitlines() if f" {key} " in ln), None)
        assert line is not None and " completed " in line, (key, output)
    assert "StepInfo(" not in output and "Run(" not in output, output


def test_readme_example_runs_to_completion(tmp_path: Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(readme_example())
    done = run_python(script, tmp_path)
    assert done.returncode == 0, done.stderr
    assert_timeline(done.stdout)
    # The default store is a file under the working directory.
    assert (tmp_path / ".dataflows" / "dataflows.db").exists()


def test_readme_example_loads_as_an_app_without_running(tmp_path: Path) -> None:
    """The ``__main__`` guard: ``dataflows dev app.py`` imports the file and finds the app; the
    module's demo does not run on import."""
    script = tmp_path / "app.py"
    script.write_text(readme_example())
    cwd = Path.cwd()
    os.chdir(tmp_path)
    try:
        app = load_app(str(script))
    finally:
        os.chdir(cwd)
    assert [w.id for w in app.registry] == ["copy-to-clickup"]
    assert not (tmp_path / ".dataflows").exists()


def test_quickstart_prints_its_timeline(tmp_path: Path) -> None:
    done = run_python(ROOT / "examples" / "quickstart.py", tmp_path)
    assert done.returncode == 0, done.stderr
    assert_timeline(done.stdout)
    assert "third-party calls: {'get_work_item': 1, 'create_task': 1}" in done.stdout
