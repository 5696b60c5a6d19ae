"""``ioc eval``: score a detector on a NAB-style corpus (``nab DIR``) or dispatch ``scenario``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from analytics.detectors import DETECTORS, make_detector
from analytics.detectors.alarm import AlarmPolicy, BoolArray
from analytics.engine.base import Detector, FloatArray
from analytics.eval import nab, scenario
from analytics.eval.offline import Series, live_policy, parse_times, read_series, run_bank

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class CorpusFile:
    """One labelled series of a NAB-style corpus (``<category>/<file>.csv``)."""

    name: str
    series: Series
    labels: nab.LabelledFile

    @property
    def category(self) -> str:
        return self.name.split("/", 1)[0]


def load_corpus(root: Path, categories: Sequence[str] | None = None) -> list[CorpusFile]:
    """Read ``root/data/<category>/*.csv`` with windows from ``root/labels/combined_windows.json``.

    Files under ``data`` without an entry in the label file are an error (NAB requires one).
    """
    label_path = root / "labels" / "combined_windows.json"
    windows: dict[str, list[list[str]]] = json.loads(label_path.read_text())
    files: list[CorpusFile] = []
    for path in sorted((root / "data").glob("*/*.csv")):
        name = path.relative_to(root / "data").as_posix()
        if categories and name.split("/", 1)[0] not in categories:
            continue
        if name not in windows:
            raise ValueError(f"{name} has no entry in {label_path}")
        series = read_series(path)
        limits = [(float(a), float(b)) for a, b in (parse_times(w) for w in windows[name])]
        files.append(CorpusFile(name, series, nab.label_file(name, series.times, limits)))
    if not files:
        raise ValueError(f"no data/<category>/*.csv files under {root}")
    return files


@dataclass(frozen=True, slots=True)
class Evaluation:
    """A detector's NAB results over a corpus at the live operating point, one per profile.

    ``results``: the scores at the live threshold (the one the service alarms at);
    ``best``: at each profile's best threshold, NAB's own rule (chosen after the fact);
    ``alerts``: the alarm onsets of the live alarm state (what an operator sees as new
    alerts) scored as the detections.
    """

    files: list[CorpusFile]
    scores: list[FloatArray]
    alarms: list[BoolArray]
    threshold: float
    results: dict[str, nab.ProfileResult]
    best: dict[str, nab.ProfileResult]
    alerts: dict[str, nab.ProfileResult]
    seconds: float

    def category_scores(self, profile: str = "standard") -> dict[str, float]:
        result = self.results[profile]
        cats = sorted({f.category for f in self.files})
        return {
            cat: result.group_score([f.labels for f in self.files if f.category == cat])
            for cat in cats
        }

    def at(self, threshold: float, profile: nab.Profile = nab.STANDARD) -> float:
        """Normalised score of the whole corpus at another threshold (sensitivity)."""
        labels = [f.labels for f in self.files]
        return nab.score_corpus(labels, self.scores, profile, threshold).score

    def cross_validation(
        self, profile: nab.Profile = nab.STANDARD
    ) -> dict[str, tuple[float, float]]:
        """Leave one category out: (threshold chosen on the others, held-out category's score).

        The held-out score says what the threshold is worth on series it was not chosen on.
        """
        out: dict[str, tuple[float, float]] = {}
        for cat in sorted({f.category for f in self.files}):
            train = [
                (f.labels, s)
                for f, s in zip(self.files, self.scores, strict=True)
                if f.category != cat
            ]
            test = [
                (f.labels, s)
                for f, s in zip(self.files, self.scores, strict=True)
                if f.category == cat
            ]
            if not train or not any(lab.n_windows for lab, _ in train):
                continue
            thr = nab.sweep([a for a, _ in train], [b for _, b in train], profile).best()[0]
            held = nab.score_corpus([a for a, _ in test], [b for _, b in test], profile, thr)
            out[cat] = (thr, held.score)
        return out


def evaluate(
    files: list[CorpusFile],
    detector_factory: Callable[[], Detector] | None = None,
    policy: AlarmPolicy | None = None,
) -> Evaluation:
    """Run a fresh detector over every file (all files at once, one slot each) and score it
    at the live threshold (``policy``, default: the configured live alarm policy)."""
    started = time.perf_counter()
    policy = live_policy() if policy is None else policy
    detector = make_detector() if detector_factory is None else detector_factory()
    scores, alarms = run_bank(detector, [(f.series.times, f.series.values) for f in files], policy)
    labels = [f.labels for f in files]
    onsets = [np.diff(a.astype(np.float64), prepend=0.0).clip(0.0, 1.0) for a in alarms]
    results = {p.name: nab.score_corpus(labels, scores, p, policy.threshold) for p in nab.PROFILES}
    best = {p.name: nab.score_corpus(labels, scores, p) for p in nab.PROFILES}
    alerts = {p.name: nab.score_corpus(labels, onsets, p, 0.5) for p in nab.PROFILES}
    return Evaluation(
        files,
        scores,
        alarms,
        policy.threshold,
        results,
        best,
        alerts,
        time.perf_counter() - started,
    )


SENSITIVITY = (0.8, 0.9, 1.0, 1.1, 1.2)  # multiples of the live threshold in the report


def format_report(ev: Evaluation, per_file: bool = False, cv: bool = False) -> str:
    """Profile scores at the live threshold (and at NAB's best, and of alert onsets),
    the per-category breakdown, the threshold's sensitivity, optionally per file and the
    leave-one-category-out cross-validation."""
    rows = sum(len(f.series) for f in ev.files)
    windows = sum(f.labels.n_windows for f in ev.files)
    lines = [
        f"NAB v1.1 scoring: {len(ev.files)} files, {rows} rows, {windows} windows, "
        f"detector ran in {ev.seconds:.1f} s",
        f"live threshold {ev.threshold:g} (IOC_ANALYTICS_SERIES_THRESHOLD): the scores below "
        "are at it unless marked 'best'",
        "",
        f"{'profile':<16}{'score':>8}{'detections':>12}{'alert onsets':>14}{'best':>8}{'at':>8}",
    ]
    for name, r in ev.results.items():
        b, a = ev.best[name], ev.alerts[name]
        lines.append(
            f"{name:<16}{r.score:>8.1f}{sum(r.detections.values()):>12d}{a.score:>14.1f}"
            f"{b.score:>8.1f}{b.threshold:>8.3f}"
        )
    lines += ["", "per category (at the live threshold):"]
    cats = sorted({f.category for f in ev.files})
    header = f"{'category':<26}{'files':>6}" + "".join(f"{n:>16}" for n in ev.results)
    lines.append(header)
    for cat in cats:
        group = [f.labels for f in ev.files if f.category == cat]
        cells = "".join(f"{r.group_score(group):>16.1f}" for r in ev.results.values())
        lines.append(f"{cat:<26}{len(group):>6}{cells}")
    sens = "  ".join(f"{k * ev.threshold:.2f}: {ev.at(k * ev.threshold):.1f}" for k in SENSITIVITY)
    lines += ["", f"sensitivity (standard score by threshold): {sens}"]
    if cv:
        lines += ["", "leave one category out (threshold chosen on the other categories):"]
        lines.append(f"{'held-out category':<26}{'threshold':>10}{'standard':>10}")
        for cat, (thr, score) in ev.cross_validation().items():
            lines.append(f"{cat:<26}{thr:>10.3f}{score:>10.1f}")
    if per_file:
        std = ev.results["standard"]
        lines += ["", f"{'file (standard profile)':<60}{'windows':>8}{'hit':>5}{'FP':>5}{'raw':>8}"]
        for f, s in zip(ev.files, ev.scores, strict=True):
            lab = f.labels
            det = lab.scored & (s >= std.threshold)
            hit = np.unique(lab.window[det & (lab.window >= 0)]).size
            fps = int(np.count_nonzero(det & (lab.window < 0)))
            lines.append(
                f"{f.name:<60}{lab.n_windows:>8}{hit:>5}{fps:>5}{std.per_file[f.name]:>8.2f}"
            )
    return "\n".join(lines)


def _nab_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="ioc eval nab",
        description="Run a detector over a NAB-style folder (DIR/data/<category>/*.csv and "
        "DIR/labels/combined_windows.json) and print NAB v1.1 scores.",
    )
    parser.add_argument("dir", type=Path, help="NAB-style corpus folder")
    parser.add_argument(
        "--detector",
        default="ensemble",
        choices=sorted(DETECTORS),
        help="detector (default: ensemble)",
    )
    parser.add_argument("--category", action="append", help="only these categories (repeatable)")
    parser.add_argument("--per-file", action="store_true", help="also print one line per file")
    parser.add_argument(
        "--cv", action="store_true", help="also cross-validate the threshold by category"
    )
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    try:
        files = load_corpus(args.dir, args.category)
    except (OSError, ValueError) as exc:
        print(f"ioc eval nab: {exc}", file=sys.stderr)
        return 2
    ev = evaluate(files, lambda: make_detector(args.detector))
    if args.json:
        doc = {
            "detector": args.detector,
            "files": len(files),
            "seconds": round(ev.seconds, 2),
            "threshold": ev.threshold,
            "profiles": {
                name: {
                    "score": r.score,
                    "threshold": r.threshold,
                    "raw": r.raw,
                    "alert_onsets_score": ev.alerts[name].score,
                    "best_score": ev.best[name].score,
                    "best_threshold": ev.best[name].threshold,
                }
                for name, r in ev.results.items()
            },
            "categories": ev.category_scores(),
            "categories_by_profile": {name: ev.category_scores(name) for name in ev.results},
        }
        print(json.dumps(doc, indent=2))
    else:
        print(format_report(ev, per_file=args.per_file, cv=args.cv))
    return 0


def main(argv: list[str]) -> int:
    """``ioc eval nab DIR`` | ``ioc eval scenario ...``."""
    if not argv or argv[0] in ("-h", "--help"):
        print(
            "usage: ioc eval nab DIR [--detector NAME] [--category CAT] [--per-file] [--cv] [--json]\n"
            "       ioc eval scenario ...   (alert-level evaluation on simulated scenarios)"
        )
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command == "nab":
        return _nab_main(rest)
    if command == "scenario":
        return int(scenario.main(rest) or 0)
    print(f"ioc eval: unknown subcommand {command!r} (nab | scenario)", file=sys.stderr)
    return 2
