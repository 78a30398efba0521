"""Command-line round trips: synth -> evaluate with GT as predictions, summary, demo --quick."""

import json
from pathlib import Path

from typer.testing import CliRunner

from famipose.cli import app
from famipose.engine.report import logged_grad_ratios

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


def test_demo_quick_writes_report_overlay_and_runs(tmp_path: Path) -> None:
    import av

    result = runner.invoke(app, ["demo", "--out", str(tmp_path / "demo"), "--quick"])
    assert result.exit_code == 0, result.output
    report = (tmp_path / "demo" / "report.md").read_text()
    assert "| single-frame HRNet |" in report and "| FAMI-Pose |" in report
    # stage 2 trains with the paper's MI, and the report gives its measured gradient ratio
    mi_line = next(line for line in report.splitlines() if "`loss.mi_form: vsd`" in line)
    assert f"{logged_grad_ratios(tmp_path / 'demo' / 'famipose')[-1]:.3g} at the last" in mi_line
    for run in ("single_frame", "famipose"):
        assert (tmp_path / "demo" / run / "train_curves.png").stat().st_size > 0
        assert (tmp_path / "demo" / run / "per_joint_map.png").stat().st_size > 0
    (overlay,) = (tmp_path / "demo").glob("overlay_*.mp4")
    with av.open(str(overlay)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    assert len(frames) == 8  # the quick demo's validation video
    assert frames[0].shape[1] == 2 * 128  # two 128-px-wide frames side by side
