"""The README's Use section runs as written on a fresh clone (at tiny sizes), in its order."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from famipose.cli import app

ROOT = Path(__file__).resolve().parents[1]
TINY_OPTIONS = {"--frames": "8", "--size": "128x96"}  # synth: 8 frames of 128x96 instead of 60 of 384x288
TINY_VIDEOS = {"train": "2", "val": "1"}
TINY_RUN = ["data.num_workers=0", "train.device=cpu", "train.batch_size=4", "train.epochs=1",
            "train.max_steps_per_epoch=2"]  # fmt: skip


def use_commands() -> list[list[str]]:
    """The command lines of the first bash block of the README's Use section (comments dropped)."""
    section = (ROOT / "README.md").read_text().split("## Use\n", 1)[1]
    block = section.split("```bash\n", 1)[1].split("```", 1)[0].replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in block.splitlines() if shlex.split(line, comments=True)]


def tiny(command: list[str]) -> list[str]:
    """The command at test sizes: small SynthTrack, two training steps, tiny summary configs."""
    name, args = command[1], list(command[2:])
    if name == "synth":
        for option, value in {**TINY_OPTIONS, "--videos": TINY_VIDEOS[args[args.index("--split") + 1]]}.items():
            args[args.index(option) + 1] = value
        args += ["--workers", "1"]
    elif name in ("train", "test"):
        args += [arg for item in TINY_RUN for arg in ("--set", item)]
    elif name == "summary":
        args = [arg.replace("_w48_384x288", "_tiny") for arg in args]
    return [name, *args]


def test_the_use_section_lists_the_commands_it_claims() -> None:
    names = [command[1] for command in use_commands()]
    assert all(command[0] == "famipose" for command in use_commands())
    assert names == [
        "synth", "synth", "train", "train", "test", "evaluate", "report", "video", "export", "export", "summary"
    ]  # fmt: skip


def test_the_use_section_runs_as_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "configs").symlink_to(ROOT / "configs")
    monkeypatch.chdir(tmp_path)  # a fresh clone: configs/ and nothing else
    for command in use_commands():
        result = CliRunner().invoke(app, tiny(command))
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
    for output in ("runs/synth_fami/best.pth", "runs/synth_fami_test/predictions/ORIGIN", "ap.json", "report.md",
                   "report.png", "overlay.mp4", "poses/200000_synth_val.json", "synth_fami.onnx",
                   "synth_fami.safetensors"):  # fmt: skip
        assert (tmp_path / output).stat().st_size > 0, output
