"""The package's floors: kernels/ imports nothing above it, and no import goes round in a loop.

Read from the sources with scripts/import_graph.py (ast: module-level,
deferred and importlib imports alike), so a loop hidden inside a function
counts. The checker is held to a small package that breaks both rules, so
that a checker that finds nothing cannot pass for a clean package.
"""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _script():
    spec = importlib.util.spec_from_file_location("import_graph",
                                                  ROOT / "scripts" / "import_graph.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


graph_tool = _script()


@pytest.fixture(scope="module")
def graph():
    return graph_tool.read_graph(str(ROOT / "pygqa"))


def test_the_graph_covers_the_package_but_the_bench(graph):
    assert {"pygqa", "pygqa.layer", "pygqa.attention", "pygqa.kernels.paths",
            "pygqa.kernels.numerics", "pygqa.kernels.explicit"} <= set(graph)
    assert not any(m.startswith("pygqa.bench") for m in graph)
    # importlib's strings count: the path table reaches every fused kernel.
    assert graph["pygqa.kernels.paths"]["pygqa.kernels.torch_sdpa"] == "dynamic"


def test_kernels_import_nothing_from_above(graph):
    assert graph_tool.upward_imports(graph) == []


def test_no_import_cycle(graph):
    assert graph_tool.cycles(graph) == []


def test_the_dispatcher_stands_on_the_kernels(graph):
    floor = graph_tool.floors(graph)
    kernels = [m for m in graph if m.startswith("pygqa.kernels")]
    assert max(floor[m] for m in kernels) < floor["pygqa.attention"] < floor["pygqa.layer"]
    assert floor["pygqa.kernels.numerics"] == 0


def _write(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_checker_finds_an_upward_import_and_a_deferred_cycle(tmp_path):
    # The shape of the loop that pygqa had: a kernel importing the dispatcher's
    # softmax, the dispatcher importing the kernel inside a function.
    _write(tmp_path, {
        "pygqa/__init__.py": "",
        "pygqa/attention.py": ("def softmax(x):\n    return x\n\n"
                               "def grouped(x):\n    from pygqa.kernels import band\n"
                               "    return band.attention(x)\n"),
        "pygqa/kernels/__init__.py": "",
        "pygqa/kernels/band.py": "from pygqa.attention import softmax\n",
        "pygqa/kernels/paths.py": "TABLE = {'band': 'pygqa.kernels.band'}\n",
        "pygqa/bench/__init__.py": "from pygqa.attention import softmax\n",
    })
    graph = graph_tool.read_graph(str(tmp_path / "pygqa"))
    assert graph["pygqa.attention"] == {"pygqa.kernels.band": "deferred"}
    assert graph["pygqa.kernels.paths"] == {"pygqa.kernels.band": "dynamic"}
    assert "pygqa.bench" not in graph
    assert graph_tool.upward_imports(graph) == [("pygqa.kernels.band", "pygqa.attention")]
    assert graph_tool.cycles(graph) == [["pygqa.attention", "pygqa.kernels.band"]]
    assert len(graph_tool.violations(graph)) == 2


def test_the_checker_passes_a_clean_package_with_relative_imports(tmp_path):
    _write(tmp_path, {
        "pygqa/__init__.py": "from pygqa.attention import grouped\n",
        "pygqa/attention.py": "from pygqa.kernels import numerics\n",
        "pygqa/kernels/__init__.py": "from .numerics import softmax\n",
        "pygqa/kernels/numerics.py": "import keras\n",
        "pygqa/kernels/band.py": "from . import numerics\nfrom .numerics import softmax\n",
    })
    graph = graph_tool.read_graph(str(tmp_path / "pygqa"))
    assert graph["pygqa.kernels.band"] == {"pygqa.kernels.numerics": "static"}
    assert graph["pygqa.kernels"] == {"pygqa.kernels.numerics": "static"}
    assert graph_tool.violations(graph) == []
