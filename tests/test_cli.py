"""Command-line round trips: synth -> evaluate with GT as predictions, summary, demo --quick."""

import json
from pathlib import Path

from typer.testing import CliRunner

from famipose.cli import app

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()


def test_synth_then_evaluate_gt_as_predictions_scores_100(tmp_path: Path) -> None:
    data = tmp_path / "synth"
    result = runner.invoke(
        app, ["synth", str(data), "--videos", "2", "--frames", "6", "--size", "128x96", "--split", "val",
              "--difficulty", "hard", "--workers", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    gt = data / "annotations" / "val"
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["evaluate", "--gt", str(gt), "--pred", str(gt), "--json", str(out)])
    assert result.exit_code == 0, result.output
    scores = json.loads(out.read_text())
    for group in ("Head", "Shoulder", "Elbow", "Wrist", "Hip", "Knee", "Ankle", "Total"):
        assert scores[group] == 100.0, group


def test_summary_reports_parameters_and_macs() -> None:
    configs = [str(ROOT / "configs" / f"{name}_tiny.yaml") for name in ("single_frame", "famipose")]
    result = runner.invoke(app, ["summary", "-c", configs[0], "-c", configs[1]], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    single, fami = (line for line in result.output.splitlines() if "_tiny" in line)
    assert "0.74M" in single and "1.00×" in single  # tiny HRNet: 738,113 parameters
    cells = [cell.strip() for cell in fami.split("│")]
    assert cells[2] == "famipose" and cells[5] == "5"  # key + 4 supports through the backbone
