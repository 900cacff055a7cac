"""Is a difference between two systems more than the clips it was measured on? Paired bootstrap over clips.

Codec tables compare systems on the same 16-48 clips, and clips differ far more from each other than the
systems do; so the figure that says whether system A beats B is the per-clip difference A - B, resampled
over clips (Efron & Tibshirani 1993, "An Introduction to the Bootstrap", ch. 13: the percentile interval).
An interval that contains 0 means the clips cannot tell the two apart.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from musiclm.errors import MusicLMError

RESAMPLES = 10_000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedDifference:
    mean: float  # mean of a - b over the clips
    low: float  # percentile bootstrap interval of that mean
    high: float
    clips: int

    @property
    def decided(self) -> bool:
        """True when the interval excludes 0: the clips tell the two systems apart."""
        return self.low > 0 or self.high < 0

    def __str__(self) -> str:
        return f"{self.mean:+.3f} [{self.low:+.3f}, {self.high:+.3f}]"


def paired_difference(
    a: list[float] | np.ndarray,
    b: list[float] | np.ndarray,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> PairedDifference:
    """Mean of a - b over paired clips and its percentile bootstrap interval (seeded, so reproducible)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise MusicLMError(f"paired_difference needs two equal, non-empty, finite lists, got {a.shape} and {b.shape}")
    diff = a - b
    rng = np.random.default_rng(seed)
    means = diff[rng.integers(0, len(diff), size=(resamples, len(diff)))].mean(axis=1)
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return PairedDifference(float(diff.mean()), float(low), float(high), len(diff))
