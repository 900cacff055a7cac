"""Fréchet distance between two sets of clip embeddings, and diversity across seeds.

The Fréchet distance between Gaussians fitted to the two sets (Heusel et al. 2017, eq. 6; as FAD,
Kilgour et al. 2019, with a different embedding — see `musiclm.evaluation.embedding`):

    FD = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))

With fewer clips than embedding dimensions the covariances are rank-deficient and FD is biased upward
(the bias shrinks as 1/n), so only compare FDs computed with the same number of clips per set.
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy import linalg

from musiclm.errors import MusicLMError


def gaussian_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """emb [n, D] → (mean [D], covariance [D, D]); needs n >= 2."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise MusicLMError(f"a Fréchet distance needs >= 2 embeddings shaped [n, D], got {emb.shape}")
    return emb.mean(0), np.cov(emb, rowvar=False)


def frechet_distance(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """FD between embedding sets x [n, D] and y [m, D] (same D)."""
    mu_x, s_x = gaussian_stats(x)
    mu_y, s_y = gaussian_stats(y)
    if mu_x.shape != mu_y.shape:
        raise MusicLMError(f"embedding widths differ: {mu_x.shape[0]} vs {mu_y.shape[0]}")
    with warnings.catch_warnings():  # with fewer clips than dims the product is singular by construction
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(s_x @ s_y)
    if not np.isfinite(covmean).all():
        # Singular product: regularize both covariances slightly, as the reference FID code does.
        offset = np.eye(s_x.shape[0]) * eps
        covmean = linalg.sqrtm((s_x + offset) @ (s_y + offset))
    covmean = np.real(covmean)  # sqrtm of a PSD product is real up to round-off
    diff = mu_x - mu_y
    fd = float(diff @ diff + np.trace(s_x) + np.trace(s_y) - 2.0 * np.trace(covmean))
    return max(fd, 0.0)  # round-off can make FD(X, X) a tiny negative number


def diversity(emb: np.ndarray) -> float:
    """Mean pairwise Euclidean distance within a set emb [n, D] (e.g. one prompt, several seeds)."""
    emb = np.asarray(emb, dtype=np.float64)
    n = emb.shape[0]
    if n < 2:
        raise MusicLMError("diversity needs at least 2 clips")
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))  # [n, n]
    return float(d[np.triu_indices(n, k=1)].mean())
