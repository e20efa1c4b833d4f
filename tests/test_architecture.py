"""The package's areas import one another one way only (docs/ARCHITECTURE.md), and shared names have one home.

Every ``import`` of every module is read with ``ast`` — at module top, inside functions and under
``TYPE_CHECKING`` alike, plus ``importlib.import_module("reprolib....")`` with a literal name — and mapped
from module to area. An import may only go to a lower layer of :data:`LAYERS`, or along one of the
:data:`SAME_LAYER` edges; the whole area graph must be free of cycles.
"""

from __future__ import annotations

import ast
import graphlib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "reprolib"

#: The layers, lowest first: an area may import the areas of the layers below its own.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("io", "labels", "allocator", "precision"),  # atomic files, label tables, malloc settings, IEEE fp32 (no TF32)
    ("cli", "weights"),  # the CLIs' argument checks and one-line errors; the weight files' names every front door checks
    ("data",),  # official formats, loaders, processed splits, the training-data generator
    ("world", "backends", "maps", "models"),  # the embedded world; networks and uncertainty maps
    ("precompute",),  # backends + maps over a data set → processed-split folders
    ("training", "ensemble", "metrics"),  # Lightning training, ensembles, Fishyscapes metrics
    ("experiments",),  # what each table runs
    ("report", "kaggle", "explore", "main"),  # LaTeX report, Kaggle sessions, the JupyterLab explorer, ``python -m reprolib``
)
#: Imports allowed inside one layer (importer, imported): one way each, so no cycle.
SAME_LAYER: frozenset[tuple[str, str]] = frozenset({
    ("weights", "cli"),  # a misspelt checkpoint name is a usage error with cli's "did you mean"
    ("maps", "models"),  # the perceptual difference V uses the VGG pyramid of the encoders
    ("backends", "models"),  # the embedded generator convolves in the CPU layout of models/layout.py
    ("ensemble", "metrics"),  # the grid search scores candidates with AnomalyMetrics
    ("training", "ensemble"),  # the learned ensemble trains with the network
    ("training", "metrics"),  # validation metrics
})
#: Known violations, to be removed, never added to: (importer, imported) → where. Empty since the embedded
#: backends' training moved under ``training/`` and the pipeline (not the registry) trains them on first use.
#: The test fails once an entry no longer occurs, so a stale entry cannot linger.
KNOWN_VIOLATIONS: dict[tuple[str, str], str] = {}

AREA_OF = {area: i for i, layer in enumerate(LAYERS) for area in layer}
#: top-level modules that are an area of their own under another name
MODULE_AREAS = {"__main__": "main"}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _area(module: str) -> str | None:
    """Area of ``reprolib.<x>...`` (``None`` for the package root ``reprolib`` itself)."""
    parts = module.split(".")
    if len(parts) < 2:
        return None
    return MODULE_AREAS.get(parts[1], parts[1])


def _imported_modules(path: Path, root: Path = ROOT) -> list[tuple[str, int]]:
    """(imported ``reprolib`` module, line) for every import in ``path``, wherever it sits."""
    module = _module_name(path, root)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # ``from reprolib import io`` imports the submodule reprolib.io
            out += [(f"{target}.{a.name}" if target == "reprolib" else target, node.lineno) for a in node.names]
        elif (isinstance(node, ast.Call) and node.args and
              (getattr(node.func, "attr", None) == "import_module" or getattr(node.func, "id", None) == "import_module")):
            arg = node.args[0]
            if isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                arg = arg.values[0]  # f"reprolib.backends.{name}": its literal prefix names the area
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                out.append((arg.value.rstrip("."), node.lineno))
    return [(m, line) for m, line in out if m == "reprolib" or m.startswith("reprolib.")]


def area_edges() -> dict[tuple[str, str], list[str]]:
    """(importer area, imported area) → ``file:line`` of each import between two different areas."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        src = _area(_module_name(path))
        for target, line in _imported_modules(path):
            dst = _area(target)
            if src is not None and dst is not None and src != dst:
                where = edges.setdefault((src, dst), [])
                if f"{path.relative_to(ROOT)}:{line}" not in where:
                    where.append(f"{path.relative_to(ROOT)}:{line}")
    return edges


def test_every_module_belongs_to_a_layer() -> None:
    areas = {_area(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {None}
    unplaced = sorted(areas - set(AREA_OF))
    assert not unplaced, f"modules outside every layer: {unplaced} — add them to LAYERS here and to docs/ARCHITECTURE.md"


def test_area_graph_has_no_cycle() -> None:
    graph: dict[str, set[str]] = {}
    for src, dst in area_edges():
        graph.setdefault(src, set()).add(dst)
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as err:
        cycle = err.args[1][::-1]  # graphlib lists it against the import direction
        where = {f"{a} → {b}": area_edges().get((a, b)) for a, b in zip(cycle, cycle[1:], strict=False)}
        pytest.fail(f"import cycle between areas {' → '.join(cycle)}: {where}")


def test_imports_flow_one_way_down_the_layers() -> None:
    edges = area_edges()
    wrong = {}
    for (src, dst), where in edges.items():
        allowed = AREA_OF[dst] < AREA_OF[src] or (src, dst) in SAME_LAYER
        if not allowed and (src, dst) not in KNOWN_VIOLATIONS:
            wrong[f"{src} → {dst}"] = where
    assert not wrong, f"imports against the layering (docs/ARCHITECTURE.md): {wrong}"
    stale = [edge for edge in KNOWN_VIOLATIONS if edge not in edges]
    assert not stale, f"no longer occurs, remove from KNOWN_VIOLATIONS: {stale}"
    unused = [edge for edge in SAME_LAYER if edge not in edges]
    assert not unused, f"no longer occurs, remove from SAME_LAYER: {unused}"


def test_the_checker_sees_every_kind_of_import(tmp_path: Path) -> None:
    """The parser itself: lazy, relative, ``from reprolib import x`` and ``import_module`` imports all count."""
    pkg = tmp_path / "reprolib" / "maps"
    pkg.mkdir(parents=True)
    src = pkg / "probe.py"
    src.write_text(
        "import importlib\n"
        "from reprolib import io\n"
        "from ..data import formats\n"
        "def f(name):\n"
        "    from reprolib.training.run import train\n"
        "    return importlib.import_module(f'reprolib.backends.{name}')\n",
        encoding="utf-8",
    )
    found = sorted(m for m, _ in _imported_modules(src, root=tmp_path))
    assert found == ["reprolib.backends", "reprolib.data", "reprolib.io", "reprolib.training.run"]
    assert _area("reprolib.__main__") == "main" and _area("reprolib.cli") == "cli" and _area("reprolib") is None


# -- one home for shared names -------------------------------------------------------------------------------

def _literal_assignments() -> list[tuple[str, object]]:
    """(``file:line``, value) of every module-level assignment of a literal in the package."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None:
                try:
                    value = ast.literal_eval(node.value)
                except (ValueError, TypeError, SyntaxError):
                    continue
                out.append((f"{path.relative_to(ROOT)}:{node.lineno}", value))
    return out


def test_map_names_folders_and_fixed_weights_are_defined_once() -> None:
    from reprolib.data.formats import LABEL_DIRS, MAP_FOLDERS, UNCERTAINTY_MAPS
    from reprolib.ensemble import FIXED_ENSEMBLE

    literals = _literal_assignments()
    shared = {"UNCERTAINTY_MAPS": UNCERTAINTY_MAPS, "MAP_FOLDERS": MAP_FOLDERS, "LABEL_DIRS": LABEL_DIRS,
              "FIXED_ENSEMBLE": FIXED_ENSEMBLE}
    for name, value in shared.items():
        homes = [where for where, v in literals if v == value]
        assert len(homes) == 1, f"{name} is defined in {len(homes)} places: {homes}"
    # nor a second copy of the folder names (precompute derives its MAP_DIRS from MAP_FOLDERS)
    folders = tuple(MAP_FOLDERS.values())
    copies = [where for where, v in literals if v in (folders, list(folders))]
    assert not copies, f"map folder names copied at {copies}: import MAP_FOLDERS from reprolib.data.formats"
