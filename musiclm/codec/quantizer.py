"""Residual vector quantization (SoundStream, Zeghidour et al. 2021, Alg. 1) with EMA codebooks.

Each codebook is updated by exponential moving averages of assigned vectors (VQ-VAE-2, App. A.1), initialised
by k-means on the first batch and has dead codes (EMA usage below a threshold) restarted from random
vectors of the current batch, as in EnCodec. Gradients pass the quantizer by the straight-through estimator;
the encoder is pulled towards its codes by the commitment loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import Tensor, nn


@dataclass
class QuantizerOutput:
    quantized: Tensor  # [B, D, T], straight-through in training
    codes: Tensor  # [B, K, T] int64
    commit_loss: Tensor  # scalar


def _kmeans(samples: Tensor, num_clusters: int, iters: int) -> tuple[Tensor, Tensor]:
    """Plain k-means on [M, D] samples; returns (centroids [card, D], counts [card])."""
    generator = torch.Generator(device="cpu").manual_seed(0)
    if samples.shape[0] >= num_clusters:
        idx = torch.randperm(samples.shape[0], generator=generator)[:num_clusters]
    else:
        idx = torch.randint(0, samples.shape[0], (num_clusters,), generator=generator)
    means = samples[idx.to(samples.device)]
    counts = torch.zeros(num_clusters, device=samples.device)
    for _ in range(iters):
        assign = torch.cdist(samples, means).argmin(dim=-1)
        counts = torch.bincount(assign, minlength=num_clusters).to(samples.dtype)
        sums = torch.zeros_like(means).index_add_(0, assign, samples)
        means = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], means)
    return means, counts


class EuclideanCodebook(nn.Module):
    def __init__(
        self,
        dim: int,
        card: int,
        decay: float = 0.99,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
        epsilon: float = 1e-5,
    ):
        super().__init__()
        self.card, self.decay, self.epsilon = card, decay, epsilon
        self.kmeans_iters, self.dead_code_threshold = kmeans_iters, dead_code_threshold
        self.register_buffer("inited", torch.tensor([False]))
        self.register_buffer("cluster_size", torch.zeros(card))
        self.register_buffer("embed", torch.randn(card, dim) * 0.02)
        self.register_buffer("embed_avg", self.embed.clone())

    def encode(self, x: Tensor) -> Tensor:  # [M, D] -> [M]
        embed = self.embed.to(x.dtype).t()
        # The full -||x - e||^2, term for term as EnCodec computes it, so near-ties round the same way and
        # official weights give bit-identical codes.
        dist = -(x.pow(2).sum(1, keepdim=True) - 2 * x @ embed + embed.pow(2).sum(0, keepdim=True))
        return dist.max(dim=-1).indices

    def decode(self, codes: Tensor) -> Tensor:  # [...] -> [..., D]
        return F.embedding(codes, self.embed)

    @torch.no_grad()
    def _init(self, x: Tensor) -> None:
        means, counts = _kmeans(x.float(), self.card, self.kmeans_iters)
        self.embed.copy_(means)
        self.embed_avg.copy_(means)
        self.cluster_size.copy_(counts)
        self.inited.fill_(True)

    @torch.no_grad()
    def _ema_update(self, x: Tensor, codes: Tensor) -> None:
        x = x.float()
        onehot_counts = torch.bincount(codes, minlength=self.card).float()
        embed_sum = torch.zeros_like(self.embed_avg).index_add_(0, codes, x)
        self.cluster_size.mul_(self.decay).add_(onehot_counts, alpha=1 - self.decay)
        self.embed_avg.mul_(self.decay).add_(embed_sum, alpha=1 - self.decay)
        # Laplace smoothing keeps unused codes from dividing by zero (VQ-VAE-2 App. A.1).
        n = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (n + self.card * self.epsilon) * n
        self.embed.copy_(self.embed_avg / smoothed[:, None])
        self._restart_dead_codes(x)

    @torch.no_grad()
    def _restart_dead_codes(self, x: Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        n_dead = int(dead.sum())
        if n_dead == 0:
            return
        picks = x[torch.randint(0, x.shape[0], (n_dead,), device=x.device)]
        self.embed[dead] = picks
        self.embed_avg[dead] = picks
        self.cluster_size[dead] = self.dead_code_threshold

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:  # [M, D] -> (quantized [M, D], codes [M])
        if self.training and not bool(self.inited):
            self._init(x.detach())
        codes = self.encode(x.detach())
        quantized = self.decode(codes)
        if self.training:
            self._ema_update(x.detach(), codes)
        return quantized, codes


class ResidualVectorQuantizer(nn.Module):
    """K codebooks, each quantizing the residual the previous ones left."""

    def __init__(
        self,
        dim: int,
        n_q: int,
        card: int,
        decay: float = 0.99,
        kmeans_iters: int = 10,
        dead_code_threshold: float = 2.0,
    ):
        super().__init__()
        self.n_q, self.card, self.dim = n_q, card, dim
        self.layers = nn.ModuleList(
            EuclideanCodebook(dim, card, decay, kmeans_iters, dead_code_threshold) for _ in range(n_q)
        )

    def forward(self, latent: Tensor, n_q: int | None = None) -> QuantizerOutput:
        n_q = n_q or self.n_q
        B = latent.shape[0]
        x = rearrange(latent, "b d t -> (b t) d")
        residual = x
        quantized_sum = torch.zeros_like(x)
        codes, losses = [], []
        for layer in self.layers[:n_q]:
            quantized, layer_codes = layer(residual)
            losses.append(F.mse_loss(residual, quantized.detach()))
            residual = residual - quantized.detach()
            quantized_sum = quantized_sum + quantized
            codes.append(layer_codes)
        # Straight-through: forward uses the codes, backward sees the identity (SoundStream §3.3).
        quantized_st = x + (quantized_sum - x).detach()
        return QuantizerOutput(
            quantized=rearrange(quantized_st, "(b t) d -> b d t", b=B),
            codes=rearrange(torch.stack(codes, 1), "(b t) k -> b k t", b=B),
            commit_loss=torch.stack(losses).mean(),
        )

    def encode(self, latent: Tensor, n_q: int) -> Tensor:  # [B, D, T] -> codes [B, K, T]
        B = latent.shape[0]
        residual = rearrange(latent, "b d t -> (b t) d")
        codes = []
        for layer in self.layers[:n_q]:
            layer_codes = layer.encode(residual)
            residual = residual - layer.decode(layer_codes)
            codes.append(layer_codes)
        return rearrange(torch.stack(codes, 1), "(b t) k -> b k t", b=B)

    def decode(self, codes: Tensor) -> Tensor:  # [B, K, T] -> latent [B, D, T]
        if codes.shape[1] > self.n_q:
            raise ValueError(f"got {codes.shape[1]} codebooks, the quantizer has {self.n_q}")
        latent = sum(self.layers[k].decode(codes[:, k]) for k in range(codes.shape[1]))
        return rearrange(latent, "b t d -> b d t")
