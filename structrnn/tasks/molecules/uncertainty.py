"""How far a regression ensemble's predictions can be trusted: how well its spread ranks the
errors, how well Gaussian intervals built from it cover, and split-conformal intervals.

* :func:`spread_spearman`: Spearman's rank correlation between the members' spread and the
  absolute error of their mean (1: the largest spreads are the largest errors).
* :func:`miscalibration_area`: Tran et al. (2020)'s area between the observed and the expected
  coverage of the central Gaussian intervals ``mean +- z_p * std`` over confidence levels
  ``p`` in [0, 1] (0: calibrated; 0.5 at most), as chemprop's uncertainty evaluation reports.
* split conformal prediction (Vovk et al.; Lei et al. 2018): the scores of a calibration set
  (the validation split) are the absolute residuals, optionally divided by the spread;
  :func:`conformal_quantile` is their ``ceil((n + 1) * level) / n`` empirical quantile, and
  ``pred +- quantile (* spread)`` covers a new exchangeable point with probability at least
  ``level`` (:func:`conformal_interval`).

The conformal calibration of a run is saved as ``RUN/conformal.json``
(:func:`write_calibration`); :func:`interval_columns` gives the ``<target>_low`` and
``<target>_high`` of one prediction from it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats
from scipy.special import erfinv

from structrnn._errors import InputError
from structrnn._io import write_json

__all__ = ["spread_spearman", "miscalibration_area", "conformal_quantile", "conformal_scores",
           "conformal_interval", "coverage", "write_calibration", "read_calibration",
           "interval_columns", "CALIBRATION_FILE", "SCALES"]

CALIBRATION_FILE = "conformal.json"
SCALES = ("none", "spread")
# a zero spread must not make a normalised score infinite
_TINY = 1e-12


def _vectors(*arrays: Any) -> list[np.ndarray]:
    out = [np.asarray(a, dtype=float).reshape(-1) for a in arrays]
    if len({a.size for a in out}) > 1:
        raise ValueError(f"expected arrays of one length, got {[a.size for a in out]}")
    return out


def spread_spearman(spread: Any, abs_error: Any) -> float:
    """Spearman's rho between ``spread`` (M,) and ``abs_error`` (M,) (scipy's ``spearmanr``);
    NaN when either is constant or M < 2."""
    spread, abs_error = _vectors(spread, abs_error)
    if spread.size < 2 or np.ptp(spread) == 0 or np.ptp(abs_error) == 0:
        return float("nan")
    return float(stats.spearmanr(spread, abs_error).statistic)


def miscalibration_area(mean: Any, std: Any, true: Any, levels: int = 101) -> float:
    """The area between observed and expected coverage of Gaussian intervals.

    For each confidence level ``p`` of ``levels`` points evenly spaced over [0, 1], the
    interval ``mean +- sqrt(2) erfinv(p) * std`` should hold a fraction ``p`` of ``true``; the
    area is the trapezoidal integral over ``p`` of ``|observed(p) - p|``.

    Args:
        mean, std, true: (M,) the predictions, their standard deviations and the targets.
    """
    mean, std, true = _vectors(mean, std, true)
    if mean.size == 0:
        return float("nan")
    expected = np.linspace(0.0, 1.0, levels)
    z = math.sqrt(2.0) * erfinv(expected)  # inf at p = 1: every point is covered
    error = np.abs(true - mean)
    with np.errstate(invalid="ignore"):  # 0 * inf for a zero spread at p = 1
        half = np.nan_to_num(z[:, None] * std[None, :], nan=np.inf)
    gap = np.abs((error[None, :] <= half).mean(1) - expected)
    # the trapezoidal rule (np.trapezoid is numpy >= 2 only)
    return float(((gap[1:] + gap[:-1]) / 2 * np.diff(expected)).sum())


def conformal_scores(pred: Any, true: Any, spread: Any | None = None) -> np.ndarray:
    """(M,) the calibration scores: ``|true - pred|``, divided by ``spread`` when given."""
    if spread is None:
        pred, true = _vectors(pred, true)
        return np.abs(true - pred)
    pred, true, spread = _vectors(pred, true, spread)
    return np.abs(true - pred) / np.maximum(spread, _TINY)


def conformal_quantile(scores: Any, level: float) -> float:
    """The split-conformal quantile of ``scores`` (n,) for coverage ``level`` (1 - alpha): the
    ``ceil((n + 1) * level)``-th smallest score; ``inf`` when that exceeds n (too few points
    for the level).

    Raises:
        ValueError: ``level`` outside (0, 1), or no finite score.
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level: expected a coverage in (0, 1), got {level}")
    scores = np.sort(np.asarray(scores, dtype=float).reshape(-1))
    scores = scores[~np.isnan(scores)]
    n = scores.size
    if n == 0:
        raise ValueError("scores: expected at least one calibration score, got none")
    # the small slack keeps (n + 1) * 0.9 = 90.00000000000001 from rounding up to 91
    rank = math.ceil((n + 1) * level - 1e-9)
    return float("inf") if rank > n else float(scores[rank - 1])


def conformal_interval(pred: Any, quantile: float, spread: Any | None = None
                       ) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` (M,): ``pred -+ quantile``, times ``spread`` when the scores were
    normalised by it."""
    pred = np.asarray(pred, dtype=float)
    half = quantile if spread is None else quantile * np.maximum(np.asarray(spread, float),
                                                                  _TINY)
    return pred - half, pred + half


def coverage(low: Any, high: Any, true: Any) -> float:
    """The fraction of ``true`` inside ``[low, high]`` (NaN targets left out)."""
    low, high, true = _vectors(low, high, true)
    keep = ~np.isnan(true)
    return float(((low <= true) & (true <= high))[keep].mean()) if keep.any() else float("nan")


def write_calibration(folder: str | Path, level: float, scale: str,
                      quantiles: dict[str, float], splits: dict[str, dict[str, float]]) -> Path:
    """Save a run's calibration: ``level``, ``scale`` ("none" or "spread"), per target the
    quantile its predictor uses (the mean over the splits) and each split's own."""
    return write_json(Path(folder) / CALIBRATION_FILE,
                      {"level": level, "scale": scale, "quantile": quantiles,
                       "splits": splits})


def read_calibration(folder: str | Path) -> dict | None:
    """``RUN/conformal.json``, or None for a run trained without ``--conformal``."""
    path = Path(folder) / CALIBRATION_FILE
    return json.loads(path.read_text()) if path.is_file() else None


def interval_columns(name: str, mean: float | None, std: float | None,
                     calibration: dict) -> dict[str, float | None]:
    """``{"<name>_low", "<name>_high"}`` of one prediction: its ensemble ``mean`` and ``std``
    (the members' spread; used only with ``scale`` "spread") and the run's
    :func:`read_calibration`. None where the prediction is None."""
    if name not in calibration["quantile"]:
        raise InputError(f"{name!r}: the run's conformal calibration has no quantile for it "
                         f"(it has {sorted(calibration['quantile'])})")
    if mean is None:
        return {f"{name}_low": None, f"{name}_high": None}
    spread = None
    if calibration["scale"] == "spread":
        spread = 0.0 if std is None else std
    low, high = conformal_interval(mean, calibration["quantile"][name], spread)
    return {f"{name}_low": float(low), f"{name}_high": float(high)}
