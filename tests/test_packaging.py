"""The installed package carries what the demo reads: its configs are package data."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_wheel_runs_the_demos_config_loading_without_the_source_tree(tmp_path: Path) -> None:
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "src", source / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "wheel"), str(source)],
                   check=True, capture_output=True)  # fmt: skip
    wheel = next((tmp_path / "wheel").glob("famipose-*.whl"))
    subprocess.run([*pip, "install", "--no-deps", "--target", str(tmp_path / "site"), str(wheel)], check=True)
    probe = (
        "import famipose.demo as demo;"
        "from famipose.demo import DemoSettings, stage_config;"
        "from pathlib import Path;"
        "s = DemoSettings();"
        "names = ('synthtrack_single_frame_tiny', s.stage2_config);"
        "configs = [stage_config(name, Path('data'), s, 1, []) for name in names];"
        "print(demo.__file__); print(*[c.model.variant for c in configs])"
    )
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(tmp_path / 'site')!r}); {probe}"],
        capture_output=True, text=True, check=True, cwd=tmp_path,
    )  # fmt: skip
    location, variants = result.stdout.split("\n")[:2]
    assert location.startswith(str(tmp_path / "site"))  # the wheel's copy, not the checkout's
    assert variants.split() == ["single_frame", "famipose"]
