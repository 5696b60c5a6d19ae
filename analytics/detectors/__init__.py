"""Univariate streaming detectors (one per module) and their registry."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analytics.detectors.ensemble import EnsembleDetector
from analytics.detectors.zscore import EwmaZScore
from analytics.engine.base import Detector

DETECTORS: dict[str, Callable[..., Detector]] = {
    EnsembleDetector.name: EnsembleDetector,
    EwmaZScore.name: EwmaZScore,
}


def make_detector(name: str = EnsembleDetector.name, **params: Any) -> Detector:
    """A detector by registry name, with its defaults overridden by ``params``."""
    try:
        factory = DETECTORS[name]
    except KeyError:
        raise ValueError(
            f"unknown detector {name!r}; known: {', '.join(sorted(DETECTORS))}"
        ) from None
    return factory(**params)


__all__ = ["DETECTORS", "EnsembleDetector", "EwmaZScore", "make_detector"]
