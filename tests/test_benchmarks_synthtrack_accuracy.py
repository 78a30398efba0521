"""benchmarks/synthtrack_accuracy.py: the plateau rule, the order of the stage-2 jobs and the targets' verdicts."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from famipose.engine.report import COLUMNS, GroupSummary


def summary(label: str, total: float, std: float) -> GroupSummary:
    scores = {column: math.nan for column in COLUMNS} | {"Total": total}
    spreads = {column: math.nan for column in COLUMNS} | {"Total": std}
    return GroupSummary(label, (Path(label),), (0,), scores, spreads, None)


def test_stage1_stops_when_the_last_two_evaluations_gain_less_than_the_threshold(load_benchmark) -> None:
    bench = load_benchmark("synthtrack_accuracy")
    assert not bench.plateaued([(4, 40.0), (8, 40.1)], 0.5)  # two evaluations cannot show a plateau
    assert not bench.plateaued([(4, 40.0), (8, 40.2), (12, 40.6)], 0.5)  # +0.6 over the one before the last two
    assert bench.plateaued([(4, 40.0), (8, 40.4), (12, 40.3)], 0.5)  # best of the last two: +0.4 over 8 epochs
    assert bench.plateaued([(4, 40.0), (8, 40.0), (12, 39.0)], 0.5)  # falling counts as no gain


def test_the_longest_stage2_runs_are_taken_first_and_every_seed_of_every_arm_once(load_benchmark) -> None:
    bench = load_benchmark("synthtrack_accuracy")
    args = argparse.Namespace(arms=list(bench.ARMS), seeds=[0, 1, 2])
    jobs = bench.stage2_jobs(args)
    assert sorted(jobs) == sorted((arm, seed) for arm in bench.ARMS for seed in (0, 1, 2))
    trainable_fami = {"famipose_no_mi", "famipose_mi"}
    assert {arm for arm, _ in jobs[: 3 * len(trainable_fami)]} == trainable_fami


def test_targets_are_marked_from_the_mean_difference_against_their_bar(load_benchmark) -> None:
    bench = load_benchmark("synthtrack_accuracy")
    groups = {
        "single_frame": summary("single_frame", 60.0, 1.0),
        "famipose_no_mi_frozen": summary("famipose_no_mi_frozen", 64.5, 0.2),
        "famipose_mi_frozen": summary("famipose_mi_frozen", 65.5, 0.3),  # +5.5 and +1.0: both met
        "simcc_famipose_mi_frozen": summary("simcc_famipose_mi_frozen", 64.4, 0.4),  # -1.1: missed
    }
    rows = bench.target_lines(groups)[2:]
    assert len(rows) == 3  # the single-frame SimCC row needs a group that is not there
    assert [row.rsplit("|", 2)[-2].strip() for row in rows] == ["met", "met", "missed"]
    assert "+5.50" in rows[0] and "| 2.00 |" in rows[0]  # twice the larger std of the pair
