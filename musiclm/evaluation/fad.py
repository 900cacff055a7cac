"""Fréchet distance between two sets of clip embeddings, and diversity across seeds.

The Fréchet distance between Gaussians fitted to the two sets (Heusel et al. 2017, eq. 6; as FAD,
Kilgour et al. 2019, with a different embedding — see `musiclm.evaluation.embedding`):

    FD = |mu_x - mu_y|^2 + tr(S_x + S_y - 2 (S_x S_y)^(1/2))

With fewer clips than embedding dimensions the covariances are rank-deficient and FD is biased upward
(the bias shrinks as 1/n), so only compare FDs computed with the same number of clips per set.
"""

from __future__ import annotations

import numpy as np
import torch

from musiclm.errors import MusicLMError


def gaussian_stats(emb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """emb [n, D] → (mean [D], covariance [D, D]); needs n >= 2."""
    emb = np.asarray(emb, dtype=np.float64)
    if emb.ndim != 2 or emb.shape[0] < 2:
        raise MusicLMError(f"a Fréchet distance needs >= 2 embeddings shaped [n, D], got {emb.shape}")
    centered = torch.from_numpy(emb - emb.mean(0))
    cov = (centered.T @ centered / (emb.shape[0] - 1)).numpy()  # torch matmul: see frechet_distance
    return emb.mean(0), cov


def frechet_distance(x: np.ndarray, y: np.ndarray) -> float:
    """FD between embedding sets x [n, D] and y [m, D] (same D)."""
    mu_x, s_x = gaussian_stats(x)
    mu_y, s_y = gaussian_stats(y)
    if mu_x.shape != mu_y.shape:
        raise MusicLMError(f"embedding widths differ: {mu_x.shape[0]} vs {mu_y.shape[0]}")
    # tr((S_x S_y)^(1/2)) = tr((S_x^(1/2) S_y S_x^(1/2))^(1/2)): the inner matrix is symmetric PSD, so its
    # eigenvalues give the trace directly. Far faster and steadier than a general sqrtm, which crawls on the
    # singular covariances of few clips in many dimensions. torch (float64) rather than numpy: it keeps to
    # torch.set_num_threads, where OpenBLAS's own threads thrash on a busy machine.
    sx, sy = torch.from_numpy(s_x), torch.from_numpy(s_y)
    w, v = torch.linalg.eigh(sx)
    root_x = (v * w.clamp(min=0).sqrt()) @ v.T
    inner = torch.linalg.eigvalsh(root_x @ sy @ root_x)
    tr_covmean = float(inner.clamp(min=0).sqrt().sum())
    diff = mu_x - mu_y
    fd = float(diff @ diff + np.trace(s_x) + np.trace(s_y) - 2.0 * tr_covmean)
    return max(fd, 0.0)  # round-off can make FD(X, X) a tiny negative number


def diversity(emb: np.ndarray) -> float:
    """Mean pairwise Euclidean distance within a set emb [n, D] (e.g. one prompt, several seeds)."""
    emb = np.asarray(emb, dtype=np.float64)
    n = emb.shape[0]
    if n < 2:
        raise MusicLMError("diversity needs at least 2 clips")
    d = np.sqrt(((emb[:, None, :] - emb[None, :, :]) ** 2).sum(-1))  # [n, n]
    return float(d[np.triu_indices(n, k=1)].mean())
