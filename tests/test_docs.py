"""The project's docs and code stand alone: no pointer to a contract or section outside them."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKED = [
    "README.md",
    "ARCHITECTURE.md",
    "CHANGELOG.md",
    "docs",
    "src",
    "examples",
    "bench",
    "tests",
]
OUTSIDE_POINTER = re.compile(r"\bSPEC\b(?!_JSON)|§")


def checked_files() -> list[Path]:
    files: list[Path] = []
    for name in CHECKED:
        path = ROOT / name
        if path.is_file():
            files.append(path)
        else:
            files += [
                p
                for p in path.rglob("*")
                if p.suffix in {".md", ".py", ".sql", ".toml"}
                and "results" not in p.parts
                and not any(part.startswith(".") for part in p.relative_to(ROOT).parts)
            ]
    return files


def test_docs_and_code_do_not_point_outside_the_project() -> None:
    files = checked_files()
    assert len(files) > 50  # the walk found the tree
    found = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        if path != Path(__file__)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if OUTSIDE_POINTER.search(line)
    ]
    assert found == []
