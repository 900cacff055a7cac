"""Combine the gradients of several losses on the reconstruction x̂ (EnCodec, Défossez et al. 2022, §3.4).

Every loss ℓ_i only depends on the model through x̂, so we take g_i = ∂ℓ_i/∂x̂ and backpropagate one
combined gradient through the decoder and encoder. Two ways to combine:

- plain: g = Σ λ_i g_i (the usual weighted sum, just computed at x̂);
- balanced: g = R Σ (λ_i / Σλ) · g_i / ⟨‖g_i‖₂⟩_β, where ⟨·⟩_β is an exponential moving average of the
  per-item gradient norm (β = 0.999) and R = 1. The weights then state what fraction of the gradient each
  loss contributes, whatever its scale — so adding the adversarial loss does not need weight retuning.

The EMA state lives in buffers, so a resumed run continues exactly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Balancer(nn.Module):
    def __init__(
        self,
        weights: dict[str, float],
        balance: bool = True,
        ema: float = 0.999,
        total_norm: float = 1.0,
        epsilon: float = 1e-12,
    ):
        super().__init__()
        self.weights = {k: float(v) for k, v in weights.items() if v > 0}
        self.balance, self.ema, self.total_norm, self.epsilon = balance, ema, total_norm, epsilon
        n = len(self.weights)
        self.register_buffer("norm_sum", torch.zeros(n))  # debiased EMA: sum / count
        self.register_buffer("norm_count", torch.zeros(n))
        self.index = {name: i for i, name in enumerate(self.weights)}

    def forward(self, losses: dict[str, Tensor], output: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Gradient to backpropagate from `output` (same shape), and the gradient norm of each loss."""
        combined = torch.zeros_like(output)
        grads: dict[str, Tensor] = {}
        norms: dict[str, float] = {}
        for name, loss in losses.items():
            if name not in self.weights:
                continue
            (grad,) = torch.autograd.grad(loss, [output], retain_graph=True)
            grads[name] = grad
            # mean over the batch of the per-item L2 norm (EnCodec `per_batch_item=True`)
            norms[name] = float(grad.flatten(1).norm(dim=1).mean()) if grad.dim() > 1 else float(grad.norm())
        if not self.balance:
            for name, grad in grads.items():
                combined += self.weights[name] * grad
            return combined, norms
        total_weight = sum(self.weights[name] for name in grads)
        for name, grad in grads.items():
            if self.training:
                i = self.index[name]
                self.norm_sum[i] = self.ema * self.norm_sum[i] + norms[name]
                self.norm_count[i] = self.ema * self.norm_count[i] + 1
            i = self.index[name]
            avg = self.norm_sum[i] / self.norm_count[i].clamp(min=1e-12)
            scale = self.weights[name] / total_weight * self.total_norm / (self.epsilon + avg)
            combined += scale.to(grad.dtype) * grad
        return combined, norms
