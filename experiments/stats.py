"""Mean and 95 % confidence interval over seeds, the one way every results table in experiments/ reports spread."""

from __future__ import annotations

import math
import statistics

# two-sided 97.5 % quantiles of Student's t, by degrees of freedom (n seeds - 1); beyond 9, the normal's
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262}


def mean_ci(values: list[float]) -> tuple[float, float, float]:
    """(mean, low, high) of a t interval; one value has no interval (low = high = nan)."""
    m = statistics.fmean(values)
    if len(values) < 2:
        return m, math.nan, math.nan
    half = T975.get(len(values) - 1, 1.96) * statistics.stdev(values) / math.sqrt(len(values))
    return m, m - half, m + half


def fmt_ci(values: list[float], digits: int = 3, signed: bool = False) -> str:
    """``mean [low, high]``, or the value alone when there is no spread to show (the table says n)."""
    m, lo, hi = mean_ci(values)
    f = f"{{:{'+' if signed else ''}.{digits}f}}"
    if len(values) < 2:
        return f.format(m)
    return f"{f.format(m)} [{f.format(lo)}, {f.format(hi)}]"
