"""The default detector on the NAB corpus beside the repository (``../shared/data/nab``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from analytics.eval import cli as evaluation

NAB_DIR = (Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "nab").resolve()

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (NAB_DIR / "labels").is_dir(), reason="NAB corpus not beside the repo"),
]

# measured with the default configuration: standard 70.9, reward_low_FP 64.2, reward_low_FN 75.3
FLOOR = {"standard": 70.5, "reward_low_FP": 63.5, "reward_low_FN": 74.8}


@pytest.fixture(scope="module")
def nab_eval() -> evaluation.Evaluation:
    files = evaluation.load_corpus(NAB_DIR)
    assert len(files) >= 40
    ev = evaluation.evaluate(files)
    print(evaluation.format_report(ev))
    return ev


def test_default_detector_holds_its_measured_nab_scores(nab_eval: evaluation.Evaluation) -> None:
    for profile, floor in FLOOR.items():
        assert nab_eval.results[profile].score >= floor, profile
    # the files without anomalies stay almost quiet
    quiet = [f for f in nab_eval.files if f.labels.n_windows == 0]
    assert sum(nab_eval.results["standard"].detections[f.name] for f in quiet) <= 10


def test_default_detector_reaches_standard_70(nab_eval: evaluation.Evaluation) -> None:
    assert nab_eval.results["standard"].score >= 70.0


def test_best_nab_threshold_is_near_the_alarm_level(nab_eval: evaluation.Evaluation) -> None:
    # NAB's best threshold lies near the warning level (0.375), below the alarm level (0.5)
    for result in nab_eval.results.values():
        assert 0.35 <= result.threshold <= 0.55, result.profile.name
