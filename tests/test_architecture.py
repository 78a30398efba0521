"""The package's floors: a module imports only from floors below its own (docs/architecture.md).

Every module under ``src/famipose`` is read with :mod:`ast` (imports at module level and inside
functions). A module's floor is the longest floor name it starts with; it may import its own floor
and floors of a lower rank, never one of the same rank (models and data are siblings that know
nothing of each other) or above. Importing ``a.b.c`` also runs the package ``__init__`` of ``a.b``,
so that counts as an import too where the ``__init__`` imports anything. Since every import points
down, what a module reaches through its imports points down as well.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "famipose"

RANKS: dict[str, int] = {
    # foundations: facts and helpers that know nothing of the method
    "famipose": 0, "famipose.files": 0, "famipose.config": 0, "famipose.poses": 0, "famipose.video_writer": 0,
    "famipose.data.keypoints": 0,
    "famipose.device": 1, "famipose.geometry": 1, "famipose.codecs": 1,  # pure functions over arrays and tensors
    "famipose.models": 2, "famipose.data": 2,  # the network; the data sets (siblings)
    "famipose.losses": 3, "famipose.evaluation": 3,  # what trains the network; what scores predictions
    "famipose.inference": 4,  # videos in, poses out: never the trainer
    "famipose.engine": 5,  # training, testing, checkpoints, reports
    "famipose.demo": 6,  # the main job: generate, train, test, render
    "famipose.cli": 7,  # the command line over all of it
}  # fmt: skip


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def floor_of(module: str) -> str:
    return max((floor for floor in RANKS if module == floor or module.startswith(floor + ".")), key=len)


def imported_names(path: Path) -> set[str]:
    """Dotted famipose names a file imports (``from a import b`` gives ``a`` and ``a.b``)."""
    found: set[str] = set()
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {name for name in found if name.split(".")[0] == "famipose"}


def import_graph() -> dict[str, set[str]]:
    """Module -> the famipose modules importing it runs (package ``__init__`` files that import anything included)."""
    paths = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    direct = {name: imported_names(path) for name, path in paths.items()}
    busy_packages = {name for name, path in paths.items() if path.name == "__init__.py" and direct[name]}
    graph: dict[str, set[str]] = {}
    for name, names in direct.items():
        targets = set()
        for target in names:
            while target and target not in paths:  # ``from famipose.x import name``: the module is famipose.x
                target = target.rpartition(".")[0]
            parent = target.rpartition(".")[0]
            while parent:
                if parent in busy_packages:
                    targets.add(parent)
                parent = parent.rpartition(".")[0]
            targets.add(target)
        graph[name] = targets - {name, ""}
    return graph


def violations(graph: dict[str, set[str]]) -> list[str]:
    """``a (floor, rank) -> b (floor, rank)`` for every import that does not point down or stay on its floor."""
    found = []
    for module, targets in sorted(graph.items()):
        own = floor_of(module)
        for target in sorted(targets):
            other = floor_of(target)
            if other != own and RANKS[other] >= RANKS[own]:
                found.append(f"{module} ({own}, {RANKS[own]}) -> {target} ({other}, {RANKS[other]})")
    return found


GRAPH = import_graph()


def test_every_import_points_down() -> None:
    assert violations(GRAPH) == []


def test_the_named_rules_of_the_layout() -> None:
    """Inference never reaches the engine; models and codecs never reach data, engine or inference."""
    for module in GRAPH:
        reached, stack = set(), [module]
        while stack:
            for target in GRAPH[stack.pop()] - reached:
                reached.add(target)
                stack.append(target)
        floors = {floor_of(target) for target in reached}
        if floor_of(module) == "famipose.inference":
            assert "famipose.engine" not in floors, module
        if floor_of(module) in ("famipose.models", "famipose.codecs"):
            assert not floors & {"famipose.data", "famipose.engine", "famipose.inference"}, module


def test_the_walk_sees_real_imports_and_reports_upward_ones() -> None:
    """The checker is not vacuous: it finds known edges, function-level imports and made-up violations."""
    assert "famipose.models.hrnet" in GRAPH["famipose.models.famipose"]
    assert "famipose.engine.train" in GRAPH["famipose.cli"]
    made_up = {"famipose.models.x": {"famipose.data.dataset"}, "famipose.data.y": {"famipose.codecs.heatmap"}}
    assert violations(made_up) == ["famipose.models.x (famipose.models, 2) -> famipose.data.dataset (famipose.data, 2)"]
    assert floor_of("famipose.data.keypoints") == "famipose.data.keypoints"
    assert floor_of("famipose.data.x") == "famipose.data"


def test_importing_the_video_pipeline_loads_no_training_code() -> None:
    """``famipose video`` needs neither the trainer nor matplotlib (which only the engine's plots use)."""
    probe = (
        "import sys, famipose.inference, famipose.inference.pipeline;"
        "print(','.join(sorted(m for m in sys.modules if m.startswith(('famipose.engine', 'matplotlib.')))))"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == ""


@pytest.mark.parametrize("floor", sorted(RANKS))
def test_every_floor_exists(floor: str) -> None:
    assert floor in GRAPH, f"{floor} is named in RANKS but is no module of the package"
