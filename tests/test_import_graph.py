"""The import graph of ``wsb_gpu`` and ``benchmarks``: no circle, no library module importing a
stage or a command (``scripts/import_graph.py`` prints the same check)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "import_graph.py"


@pytest.fixture(scope="module")
def import_graph():
    spec = importlib.util.spec_from_file_location("import_graph", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def test_the_walk_sees_deferred_imports_and_skips_type_checking_blocks(import_graph, tmp_path):
    pkg = tmp_path / "wsb_gpu"
    (pkg / "stages").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "stages" / "__init__.py").write_text("")
    (pkg / "stages" / "a.py").write_text("from wsb_gpu import lib\n")
    (pkg / "lib.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n"
        "    from wsb_gpu.other import T\n"
        "def f():\n"
        "    from wsb_gpu.stages import a\n"
    )
    (pkg / "other.py").write_text("from . import other\n")
    graph = import_graph.check(tmp_path, ("wsb_gpu",))
    assert graph.circles == [["wsb_gpu.lib", "wsb_gpu.stages.a"], ["wsb_gpu.other"]]
    assert [(i.source, i.target, i.line) for i in graph.upward] == [("wsb_gpu.lib", "wsb_gpu.stages.a", 5)]
    assert not any(i.target == "wsb_gpu.other" and i.source == "wsb_gpu.lib" for i in graph.imports)


def test_no_circle_and_no_upward_import(import_graph):
    graph = import_graph.check()
    assert "wsb_gpu.stages.links" in graph.modules and "benchmarks.common" in graph.modules
    assert not graph.circles and not graph.upward, graph.report()
