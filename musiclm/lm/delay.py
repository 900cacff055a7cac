"""The delay pattern: how K parallel codebooks become one sequence the LM predicts step by step.

MusicGen (Copet et al. 2023, §2.2) shifts codebook k right by k steps, so at every step the model predicts
all K codebooks at once, and codebook k of frame t is predicted after codebooks 0..k-1 of that frame were
already seen (one step earlier). With K = 4 and T = 5 frames, S = T + K - 1 = 8 delayed steps:

    codes [K, T]                 delayed [K, S]          (· = the special token, id `card`)
                                 step s:  0  1  2  3  4  5  6  7
    k=0:  a0 a1 a2 a3 a4          k=0:   a0 a1 a2 a3 a4  ·  ·  ·
    k=1:  b0 b1 b2 b3 b4    →     k=1:    · b0 b1 b2 b3 b4  ·  ·
    k=2:  c0 c1 c2 c3 c4          k=2:    ·  · c0 c1 c2 c3 c4  ·
    k=3:  d0 d1 d2 d3 d4          k=3:    ·  ·  · d0 d1 d2 d3 d4

`delayed[k, s] = codes[k, s - k]` where 0 <= s - k < T, else the special token. The LM reads a
special-token column first (BOS) and the delayed steps shifted by one, so its output at step s is the
distribution of column s. The special token doubles as BOS and as the empty cell, as in MusicGen, so one
embedding row per codebook (index `card`) serves both.
"""

from __future__ import annotations

import torch
from torch import Tensor


def apply_delay(codes: Tensor, special: int) -> Tensor:
    """codes [B, K, T] → delayed [B, K, S], S = T + K - 1; empty cells hold `special`."""
    assert codes.dim() == 3, f"expected codes [B, K, T], got {list(codes.shape)}"
    B, K, T = codes.shape
    delayed = codes.new_full((B, K, T + K - 1), special)
    for k in range(K):
        delayed[:, k, k : k + T] = codes[:, k]
    return delayed


def undo_delay(delayed: Tensor) -> Tensor:
    """delayed [B, K, S] → codes [B, K, T], T = S - K + 1: the exact inverse of `apply_delay`."""
    assert delayed.dim() == 3, f"expected delayed codes [B, K, S], got {list(delayed.shape)}"
    B, K, S = delayed.shape
    T = S - K + 1
    assert T >= 0, f"{S} delayed steps cannot hold {K} codebooks"
    return torch.stack([delayed[:, k, k : k + T] for k in range(K)], dim=1)


def delay_valid_mask(K: int, T: int, device: torch.device | str | None = None) -> Tensor:
    """[K, S] bool: True where `apply_delay` puts a real code, False at special (empty) cells."""
    s = torch.arange(T + K - 1, device=device)[None, :]
    k = torch.arange(K, device=device)[:, None]
    return (s >= k) & (s < k + T)
