"""Per-codebook perplexity of the token LM on held-out token shards.

Perplexity of codebook k is exp(mean cross-entropy of its tokens): 1 means certain, `card` means the
model is no better than uniform. With the delay pattern the later codebooks condition on earlier ones
of the same frame, so their perplexity is usually lower; reporting per codebook shows where bits go.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch.nn.functional as F
from torch import Tensor

from musiclm.errors import MusicLMError


@dataclass
class PerplexityAccumulator:
    """Sums per-codebook negative log-likelihood and token counts over batches."""

    nll: Tensor | None = None  # [K] float64
    count: Tensor | None = None  # [K] int64

    def update(self, logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> None:
        """logits [B, K, S, card], targets [B, K, S] int; mask [B, K, S] bool (True = counted), e.g. to
        skip the delay pattern's padding positions. Targets < 0 are never counted."""
        if logits.dim() != 4 or targets.shape != logits.shape[:3]:
            raise MusicLMError(
                f"expected logits [B, K, S, card] and targets [B, K, S], "
                f"got {list(logits.shape)} and {list(targets.shape)}"
            )
        valid = targets >= 0
        if mask is not None:
            valid = valid & mask.bool()
        ce = F.cross_entropy(
            logits.float().flatten(0, 2), targets.clamp(min=0).flatten().long(), reduction="none"
        ).view_as(targets)  # [B, K, S]
        nll = (ce * valid).double().sum((0, 2))
        count = valid.long().sum((0, 2))
        self.nll = nll if self.nll is None else self.nll + nll
        self.count = count if self.count is None else self.count + count

    def perplexity(self) -> list[float]:
        """exp(mean NLL) per codebook [K]; NaN for a codebook with no counted tokens."""
        if self.nll is None:
            raise MusicLMError("no tokens were scored")
        pairs = zip(self.nll.tolist(), self.count.tolist(), strict=True)
        return [math.exp(n / c) if c else float("nan") for n, c in pairs]


def codebook_perplexity(logits: Tensor, targets: Tensor, mask: Tensor | None = None) -> list[float]:
    """One-batch convenience: per-codebook perplexity [K] of logits [B, K, S, card] against targets."""
    acc = PerplexityAccumulator()
    acc.update(logits, targets, mask)
    return acc.perplexity()
