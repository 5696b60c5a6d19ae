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

# measured at the live threshold (0.7) with the default configuration:
# standard 25.3, reward_low_FP 24.6, reward_low_FN 26.5; at NAB's own best threshold
# (0.4998, just below the ensemble's alarm level 0.5): 70.9, 64.2, 75.3
FLOOR = {"standard": 25.0, "reward_low_FP": 24.0, "reward_low_FN": 26.0}
BEST_FLOOR = {"standard": 70.5, "reward_low_FP": 63.5, "reward_low_FN": 74.8}


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
    for profile, floor in BEST_FLOOR.items():
        assert nab_eval.best[profile].score >= floor, profile
    # the files without anomalies stay almost quiet
    quiet = [f for f in nab_eval.files if f.labels.n_windows == 0]
    assert sum(nab_eval.results["standard"].detections[f.name] for f in quiet) <= 10


def test_default_detector_reaches_standard_70_at_its_alarm_level(
    nab_eval: evaluation.Evaluation,
) -> None:
    assert nab_eval.at(0.5) >= 70.0


def test_the_scored_threshold_is_the_live_one(nab_eval: evaluation.Evaluation) -> None:
    # one operating point: the scores are at the live threshold; NAB's own best
    # threshold (chosen after the fact) lies at the ensemble's alarm level
    for name, result in nab_eval.results.items():
        assert result.threshold == nab_eval.threshold == 0.7
        assert 0.49 <= nab_eval.best[name].threshold <= 0.51, name
        # with debounce 1 the alert onsets are the detections
        assert nab_eval.alerts[name].score == pytest.approx(result.score, abs=1.0)
