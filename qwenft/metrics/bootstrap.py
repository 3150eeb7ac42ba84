"""Means with 95 % confidence intervals over prompts, and paired differences between two strategies.

The unit of resampling is the **prompt**: a prompt's questions share a scenario and a retrieval pool, so they are
not independent draws, while prompts are. The interval is the percentile bootstrap (Efron & Tibshirani 1993,
ch. 13): resample the n per-prompt scores with replacement ``n_resamples`` times, take the mean of each resample,
report the 2.5th and 97.5th percentiles of those means. It is seeded, so a table is reproducible to the digit.

A **paired** difference resamples the *same* prompts for both strategies (the per-prompt differences are the
data), which is what makes two strategies evaluated on one prompt set comparable: prompt difficulty cancels
instead of widening the interval. ``scipy.stats.bootstrap(..., method="percentile")`` computes the same interval
(tests check it); numpy is used here so the core install needs no scipy.

NaN means "does not apply to this prompt" (e.g. recall without gold documents) and is left out; ``n`` says how
many prompts an estimate rests on. With fewer than 2 prompts there is no interval (NaN bounds).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

N_RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class Estimate:
    """A mean over ``n`` prompts and its percentile-bootstrap interval ``[lo, hi]``."""

    mean: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict:
        return asdict(self)

    def excludes_zero(self) -> bool:
        """True when the whole interval lies on one side of 0 (a difference the data resolve)."""
        return not math.isnan(self.lo) and (self.lo > 0 or self.hi < 0)


def _kept(values: Sequence[float]) -> np.ndarray:
    x = np.asarray([float(v) for v in values], dtype=np.float64)
    return x[~np.isnan(x)]


def bootstrap_mean(values: Sequence[float], n_resamples: int = N_RESAMPLES, confidence: float = CONFIDENCE,
                   seed: int = 0) -> Estimate:
    """Mean of the non-NaN ``values`` with its percentile-bootstrap interval (seeded, reproducible)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence={confidence}: must be between 0 and 1")
    x = _kept(values)
    n = int(x.size)
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0)
    mean = float(x.mean())
    if n < 2 or n_resamples < 1:
        return Estimate(mean, math.nan, math.nan, n)
    rng = np.random.default_rng(seed)
    means = np.empty(n_resamples)
    chunk = max(1, 4_000_000 // n)  # bound memory: at most ~4M indices at once
    for start in range(0, n_resamples, chunk):
        stop = min(n_resamples, start + chunk)
        means[start:stop] = x[rng.integers(0, n, size=(stop - start, n))].mean(axis=1)
    alpha = (1 - confidence) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return Estimate(mean, float(lo), float(hi), n)


def paired_difference(a: Sequence[float], b: Sequence[float], n_resamples: int = N_RESAMPLES,
                      confidence: float = CONFIDENCE, seed: int = 0) -> Estimate:
    """Mean of ``a[i] - b[i]`` over the prompts where both apply, with the interval from resampling those
    prompts (the same resampled prompts for both sides)."""
    if len(a) != len(b):
        raise ValueError(f"paired scores need the same prompts: {len(a)} vs {len(b)} values")
    diffs = [float(x) - float(y) for x, y in zip(a, b, strict=True)
             if not (math.isnan(float(x)) or math.isnan(float(y)))]
    return bootstrap_mean(diffs, n_resamples, confidence, seed)
