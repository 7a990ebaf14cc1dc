"""The import graph of ``dataflows``: arrows point one way, and no module imports itself in a circle.

The layers (the command line and the HTTP API on top, then the app, the engine, the store, and the
basics every layer uses) are import-linter contracts in ``pyproject.toml`` under
``[tool.importlinter]``; the first test runs them. Imports inside functions and under
``TYPE_CHECKING`` count like any other. The second test finds a cycle among single modules, a
package's ``__init__`` included, which the contracts' sibling rule does not look at.
"""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest
from importlinter.cli import lint_imports

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_layer_contracts_are_kept(capsys: pytest.CaptureFixture[str]) -> None:
    code = lint_imports(config_filename=str(PYPROJECT), no_cache=True, no_logo=True)
    assert code == 0, capsys.readouterr().out


def test_no_import_cycles() -> None:
    graph = grimp.build_graph("dataflows", cache_dir=None)
    assert cycles(graph) == []


def test_a_cycle_is_found() -> None:
    graph = grimp.build_graph("dataflows", cache_dir=None)
    graph.add_import(importer="dataflows.errors", imported="dataflows.durations")
    assert "dataflows.errors -> dataflows.durations -> dataflows.errors" in cycles(graph)


def cycles(graph: grimp.ImportGraph) -> list[str]:
    """Each import ``a -> b`` for which ``b`` leads back to ``a``, with the shortest way back."""
    found = []
    for importer in sorted(graph.modules):
        for imported in sorted(graph.find_modules_directly_imported_by(importer)):
            back = graph.find_shortest_chain(importer=imported, imported=importer)
            if back is not None:
                found.append(" -> ".join((importer, *back)))
    return found
