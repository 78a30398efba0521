"""`famipose report`: grouping by config without the seed, mean ± std by hand, the 2-std rule."""

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from famipose.cli import app
from famipose.config import load_config
from famipose.engine.report import COLUMNS, group_runs, read_run, significant, summarise_group

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


def _write_run(folder: Path, total: float, seed: int, *overrides: str, ratio: float | None = None) -> Path:
    """A run folder as `famipose train` leaves it: expanded config, eval.json, metrics.jsonl."""
    folder.mkdir(parents=True)
    config = asdict(load_config(CONFIGS / "synthtrack_famipose_tiny.yaml", [f"train.seed={seed}", *overrides]))
    (folder / "config.yaml").write_text(yaml.safe_dump(json.loads(json.dumps(config, default=str))))
    scores = {column: total + offset for offset, column in enumerate(COLUMNS[:-1])} | {"Total": total}
    (folder / "eval.json").write_text(json.dumps(scores))
    if ratio is not None:
        records = [{"kind": "train", "step": s, "parts": {"mi/grad_ratio": r}} for s, r in ((10, 9.0), (20, ratio))]
        (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records))
    return folder


def test_runs_that_differ_only_in_seed_group_and_any_other_difference_separates(tmp_path):
    runs = [
        _write_run(tmp_path / "arm_seed0", 50.0, 0),
        _write_run(tmp_path / "arm_seed1", 52.0, 1),
        _write_run(tmp_path / "other", 40.0, 0, "loss.mi_weight=0.25"),
        _write_run(tmp_path / "arm_seed2", 57.0, 2),
    ]
    groups = group_runs([read_run(run) for run in runs])
    names = [[run.path.name for run in group] for group in groups]
    assert names == [["arm_seed0", "arm_seed1", "arm_seed2"], ["other"]]
    assert [run.seed for run in groups[0]] == [0, 1, 2]
    # An ignored key joins runs that differ in it, and only it.
    joined = group_runs([read_run(run, ["loss.mi_weight"]) for run in runs])
    assert len(joined) == 1 and len(joined[0]) == 4


def test_mean_std_and_gradient_ratio_by_hand(tmp_path):
    settings = ((0, 50, 0.1), (1, 52, 0.3), (2, 57, None))
    runs = [_write_run(tmp_path / f"arm_seed{s}", total, s, ratio=r) for s, total, r in settings]
    summary = summarise_group([read_run(run) for run in runs])
    assert summary.label == "arm" and summary.n == 3
    assert summary.mean["Total"] == pytest.approx(53.0)
    # deviations -3, -1, 4: sum of squares 26, sample variance 13
    assert summary.std["Total"] == pytest.approx(math.sqrt(13.0))
    assert summary.mean["Head"] == pytest.approx(53.0) and summary.mean["Ankle"] == pytest.approx(59.0)
    assert summary.grad_ratio == pytest.approx(0.2)  # the last logged step of each run with MI


def test_a_difference_counts_only_beyond_twice_the_larger_std(tmp_path):
    base = summarise_group([read_run(_write_run(tmp_path / f"a{s}", t, s)) for s, t in ((0, 50.0), (1, 52.0))])
    near = summarise_group(
        [read_run(_write_run(tmp_path / f"b{s}", t, s, "loss.mi_weight=0.1")) for s, t in ((0, 53.0), (1, 55.5))]
    )
    far = summarise_group(
        [read_run(_write_run(tmp_path / f"c{s}", t, s, "loss.mi_weight=0.2")) for s, t in ((0, 56.0), (1, 58.0))]
    )
    single = summarise_group([read_run(_write_run(tmp_path / "d0", 90.0, 0, "loss.mi_weight=0.3"))])
    # stds: base √2, near 2.5/√2 ≈ 1.77, far √2; gaps 3.25 (< 3.54) and 6 (> 2.83)
    assert not significant(near, base, "Total")
    assert significant(far, base, "Total")
    assert math.isnan(single.std["Total"]) and not significant(single, base, "Total")


def test_cli_writes_markdown_json_and_png_and_marks_only_real_differences(tmp_path):
    runs = [_write_run(tmp_path / f"base_seed{s}", t, s) for s, t in ((0, 50.0), (1, 52.0))]
    runs += [_write_run(tmp_path / f"mi_seed{s}", t, s, "loss.mi_weight=0.2") for s, t in ((0, 56.0), (1, 58.0))]
    out = tmp_path / "out" / "report.md"
    result = CliRunner().invoke(app, ["report", *map(str, runs), "--out", str(out), "--baseline", "base"])
    assert result.exit_code == 0, result.output
    record = json.loads(out.with_suffix(".json").read_text())
    assert [g["label"] for g in record["groups"]] == ["base", "mi"]
    assert record["groups"][1]["differs_from_baseline"] == list(COLUMNS)  # every column 6 apart, stds √2
    assert record["groups"][0]["std"]["Total"] == pytest.approx(math.sqrt(2))
    assert "| mi | 2 | 0, 1 |" in out.read_text() and "57.0 ± 1.4 ↑" in out.read_text()
    assert out.with_suffix(".png").stat().st_size > 1000


def test_cli_names_the_file_of_an_unfinished_run_and_writes_nothing(tmp_path):
    run = _write_run(tmp_path / "arm", 50.0, 0)
    (run / "eval.json").unlink()
    out = tmp_path / "report.md"
    result = CliRunner().invoke(app, ["report", str(run), "--out", str(out)])
    assert result.exit_code == 1
    assert f"{run / 'eval.json'}: missing" in result.output
    assert not out.exists() and not out.with_suffix(".png").exists()
    result = CliRunner().invoke(app, ["report", str(_write_run(tmp_path / "b", 1.0, 0)), "--baseline", "nope"])
    assert result.exit_code == 1 and "no group is labelled 'nope'" in result.output


def test_a_folder_named_by_its_seed_takes_its_parents_label(tmp_path):
    assert read_run(_write_run(tmp_path / "sweep" / "seed_3", 50.0, 3)).label == "sweep"
