"""Import layering: lower layers never import the layers built on them (the arrows point down)."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "famipose"

# module or package (relative to famipose/) -> famipose packages it must not import
FORBIDDEN = {
    "codecs": ("config", "models", "data", "engine", "inference", "losses", "evaluation"),
    "config.py": ("data", "models", "codecs", "engine", "inference", "losses", "evaluation"),
    "models": ("data", "engine", "inference", "losses", "evaluation"),
}


def famipose_imports(path: Path) -> set[str]:
    """First component under ``famipose.`` of every module ``path`` imports (also inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        found |= {name.split(".")[1] for name in names if name.startswith("famipose.")}
    return found


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_nothing_above_it(layer: str) -> None:
    root = PACKAGE / layer
    files = sorted(root.glob("*.py")) if root.is_dir() else [root]
    assert files
    offenders = {
        str(path.relative_to(PACKAGE)): sorted(famipose_imports(path) & set(FORBIDDEN[layer])) for path in files
    }
    assert {name: bad for name, bad in offenders.items() if bad} == {}


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "import famipose.data.augment\nfrom famipose.config import X\n\n\ndef f():\n    import famipose.engine\n"
    )
    assert famipose_imports(module) == {"data", "config", "engine"}
