"""Pre-norm transformer blocks over SDPA, and the preallocated KV cache that generation writes into.

The decoder block is MusicGen's (Copet et al. 2023; transformers `MusicgenDecoderLayer`): LayerNorm before
self-attention, cross-attention to the text and the feed-forward, bias-free projections, sinusoidal
positions. Keeping the same layout lets official MusicGen weights load key by key (`musiclm.lm.musicgen`).

Generation follows gpt-fast: `KVCache` is allocated once for the whole window, each call writes its keys
and values at explicit `input_pos`, and attention reads either the filled prefix (`kv_len`, eager: the work
grows with the position, nothing is reallocated) or the whole buffer under a mask (static shapes, for
`torch.compile` / CUDA graphs). Cross-attention keys/values of the text are projected once and kept there.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def sinusoidal_embedding(positions: Tensor, dim: int) -> Tensor:
    """positions [S] → [S, D]: tensor2tensor sinusoids, cos first (as transformers' MusicGen)."""
    half = dim // 2
    freq = torch.exp(torch.arange(half, device=positions.device).float() * -(math.log(10000) / (half - 1)))
    angles = positions.float()[:, None] * freq[None, :]
    emb = torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)
    if dim % 2:
        emb = F.pad(emb, (0, 1))
    return emb


def padding_attn_mask(key_mask: Tensor) -> Tensor:
    """key_mask [B, L] bool (True = real token) → SDPA mask [B, 1, 1, L].

    A row with no real key (the null condition of classifier-free guidance) would give NaN through softmax;
    there the keys and values are projections of zeros, so letting it attend to everything yields exactly
    zero, which is what transformers' MusicGen computes for its all-masked null condition.
    """
    key_mask = key_mask | ~key_mask.any(dim=-1, keepdim=True)
    return key_mask[:, None, None, :]


class KVCache:
    """Self-attention keys/values of every layer, preallocated for `max_steps` positions, plus the text's
    cross-attention keys/values and the position table. Created by `MusicLM.new_cache`, passed in explicitly.

    k, v: [n_layers, B, H, max_steps, Dh]; cross_k[l], cross_v[l]: [B, H, L, Dh]; cross_mask [B, 1, 1, L].
    """

    def __init__(
        self,
        n_layers: int,
        batch: int,
        n_heads: int,
        head_dim: int,
        max_steps: int,
        dtype: torch.dtype,
        device: torch.device,
    ):
        shape = (n_layers, batch, n_heads, max_steps, head_dim)
        self.k = torch.zeros(shape, dtype=dtype, device=device)
        self.v = torch.zeros(shape, dtype=dtype, device=device)
        self.k_layers = self.k.unbind(0)  # views, so a write never allocates
        self.v_layers = self.v.unbind(0)
        self.max_steps = max_steps
        self.batch = batch
        self.cross_k: list[Tensor] = []
        self.cross_v: list[Tensor] = []
        self.cross_mask: Tensor | None = None  # additive float mask, or None when nothing is padded
        self.pos_emb: Tensor | None = None  # [max_steps, D]
        self.notes: Tensor | None = None  # [B, max_steps, D] projected note features, or None (text only)
        self.weights: list[tuple[Tensor, ...]] = []  # per layer: `Block.decode_weights`
        self.heads: Tensor | None = None  # the output heads as [D, K * card]

    def update(self, layer: int, input_pos: Tensor, k: Tensor, v: Tensor, kv_len: int | None) -> tuple[Tensor, Tensor]:
        """Write k, v [B, H, S_in, Dh] at `input_pos` [S_in]; return the keys/values to attend to."""
        ck, cv = self.k_layers[layer], self.v_layers[layer]
        ck.index_copy_(2, input_pos, k if k.dtype == ck.dtype else k.to(ck.dtype))
        cv.index_copy_(2, input_pos, v if v.dtype == cv.dtype else v.to(cv.dtype))
        if kv_len is None:
            return ck, cv
        return ck[:, :, :kv_len], cv[:, :, :kv_len]


@dataclass
class CachedStep:
    """What one cached call needs: where to write (`input_pos` [S_in]) and what to read.

    kv_len: attend to the first kv_len cached positions (eager); None: all max_steps under `mask` (static).
    mask: [S_in, kv] bool (True = may attend) or None when every read position is visible.
    """

    cache: KVCache
    input_pos: Tensor
    kv_len: int | None
    mask: Tensor | None

    @classmethod
    def make(cls, cache: KVCache, input_pos: Tensor, kv_len: int | None) -> CachedStep:
        n_in = input_pos.shape[0]
        if kv_len is not None and n_in == 1:
            return cls(cache, input_pos, kv_len, None)  # one query at the end sees the whole prefix
        n_kv = cache.max_steps if kv_len is None else kv_len
        mask = torch.arange(n_kv, device=input_pos.device)[None, :] <= input_pos[:, None]
        return cls(cache, input_pos, kv_len, mask)


class SelfAttention(nn.Module):
    """Multi-head self-attention, q/k/v fused into one matmul. Causal in the decoder, padded in the encoder."""

    def __init__(self, dim: int, n_heads: int, layer: int, causal: bool, dropout: float = 0.0):
        super().__init__()
        assert dim % n_heads == 0, f"width {dim} not divisible by {n_heads} heads"
        self.n_heads, self.head_dim, self.layer, self.causal = n_heads, dim // n_heads, layer, causal
        self.dropout = dropout
        self.qkv = nn.Linear(dim, 3 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def forward(self, x: Tensor, step: CachedStep | None = None, key_mask: Tensor | None = None) -> Tensor:
        B, S, D = x.shape  # x [B, S, D]
        q, k, v = self.qkv(x).view(B, S, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        p = self.dropout if self.training else 0.0
        if step is not None:
            k, v = step.cache.update(self.layer, step.input_pos, k, v, step.kv_len)
            y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=step.mask).to(x.dtype)
        elif self.causal:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=p)
        else:
            mask = None if key_mask is None else padding_attn_mask(key_mask)
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class CrossAttention(nn.Module):
    """Attention from the audio steps to the text memory; k/v of the memory fused and cacheable."""

    def __init__(self, dim: int, n_heads: int, layer: int, dropout: float = 0.0):
        super().__init__()
        self.n_heads, self.head_dim, self.layer, self.dropout = n_heads, dim // n_heads, layer, dropout
        self.q = nn.Linear(dim, dim, bias=False)
        self.kv = nn.Linear(dim, 2 * dim, bias=False)
        self.out = nn.Linear(dim, dim, bias=False)

    def project_memory(self, memory: Tensor) -> tuple[Tensor, Tensor]:
        """memory [B, L, D] → k, v [B, H, L, Dh]."""
        B, L, _ = memory.shape
        k, v = self.kv(memory).view(B, L, 2, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        return k, v

    def forward(
        self, x: Tensor, memory: Tensor | None, memory_mask: Tensor | None, step: CachedStep | None = None
    ) -> Tensor:
        B, S, D = x.shape
        q = self.q(x).view(B, S, self.n_heads, self.head_dim).transpose(1, 2)
        if step is not None:
            k, v = step.cache.cross_k[self.layer], step.cache.cross_v[self.layer]
            mask, q = step.cache.cross_mask, q.to(k.dtype)  # attention in the cache's dtype, as decode_one
        else:
            assert memory is not None and memory_mask is not None, "cross-attention needs the text memory"
            k, v = self.project_memory(memory)
            mask = padding_attn_mask(memory_mask)
        p = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p).to(x.dtype)
        return self.out(y.transpose(1, 2).reshape(B, S, D))


class Block(nn.Module):
    """Pre-norm block: x += SelfAttn(LN x); [x += CrossAttn(LN x, text)]; x += FFN(LN x)."""

    def __init__(
        self,
        dim: int,
        n_heads: int,
        ffn_dim: int,
        layer: int,
        causal: bool,
        cross: bool,
        dropout: float = 0.0,
        activation: str = "gelu",
    ):
        super().__init__()
        self.norm_self = nn.LayerNorm(dim)
        self.self_attn = SelfAttention(dim, n_heads, layer, causal, dropout)
        self.norm_cross = nn.LayerNorm(dim) if cross else None
        self.cross_attn = CrossAttention(dim, n_heads, layer, dropout) if cross else None
        self.norm_ffn = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn_dim, bias=False)
        self.fc2 = nn.Linear(ffn_dim, dim, bias=False)
        if activation not in ("gelu", "relu", "gelu_tanh"):
            raise ValueError(f"unsupported activation {activation!r}")
        self.activation = activation
        self.drop = nn.Dropout(dropout)

    def _act(self, x: Tensor) -> Tensor:
        if self.activation == "relu":
            return F.relu(x)
        return F.gelu(x, approximate="tanh" if self.activation == "gelu_tanh" else "none")

    def forward(
        self,
        x: Tensor,
        memory: Tensor | None = None,
        memory_mask: Tensor | None = None,
        step: CachedStep | None = None,
        key_mask: Tensor | None = None,
    ) -> Tensor:
        # dropout is called only while training: in the decode loop every skipped call is time saved
        drop = self.drop if self.training else _identity
        x = x + drop(self.self_attn(self.norm_self(x), step, key_mask))
        if self.cross_attn is not None:
            x = x + drop(self.cross_attn(self.norm_cross(x), memory, memory_mask, step))
        return x + drop(self.fc2(self._act(self.fc1(self.norm_ffn(x)))))

    def decode_weights(self, packed: bool) -> tuple[Tensor, ...]:
        """The projections `decode_one` uses, as [in, out] matrices (qkv, out, [cross q, cross out,] fc1, fc2).
        packed: contiguous copies — on CPU `x @ Wt` runs up to 1.7x faster at 8-16 rows than `F.linear(x, W)`
        (its transposed operand takes a slower BLAS path; ~8 % of a whole step); else views (no copy)."""
        sa, ca = self.self_attn, self.cross_attn
        weights = [sa.qkv.weight, sa.out.weight]
        weights += [ca.q.weight, ca.out.weight] if ca is not None else []
        weights += [self.fc1.weight, self.fc2.weight]
        return tuple(w.t().contiguous() if packed else w.t() for w in weights)

    def decode_one(self, x: Tensor, step: CachedStep) -> Tensor:
        """`forward` for one cached position, x [B, D] → [B, D], in the fewest ops: a decode step is ~200
        small ops whose views, transposes and copies cost as much as their matmuls on CPU. With one query
        per row, [B, H, 1, Dh] and [B, D] are the same memory, so no transpose is needed."""
        sa, ca = self.self_attn, self.cross_attn
        B, D = x.shape
        H, Dh = sa.n_heads, sa.head_dim
        w = step.cache.weights[sa.layer]
        w_qkv, w_out, *w_cross, w_fc1, w_fc2 = w
        h = F.layer_norm(x, (D,), self.norm_self.weight, self.norm_self.bias, self.norm_self.eps)
        q, k, v = torch.mm(h, w_qkv).view(B, 3, H, 1, Dh).unbind(1)
        k, v = step.cache.update(sa.layer, step.input_pos, k, v, step.kv_len)
        # attention runs in the cache's dtype (a bf16 cache halves the bytes read, the step's largest cost
        # at batch 8); converting one query is cheap, converting the whole cache every step is not
        y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=step.mask).to(x.dtype)
        x = x + torch.mm(y.reshape(B, D), w_out)
        if ca is not None:
            w_q, w_cross_out = w_cross
            h = F.layer_norm(x, (D,), self.norm_cross.weight, self.norm_cross.bias, self.norm_cross.eps)
            q = torch.mm(h, w_q).view(B, H, 1, Dh)
            k, v, mask = step.cache.cross_k[ca.layer], step.cache.cross_v[ca.layer], step.cache.cross_mask
            y = F.scaled_dot_product_attention(q.to(k.dtype), k, v, attn_mask=mask).to(x.dtype)
            x = x + torch.mm(y.reshape(B, D), w_cross_out)
        h = F.layer_norm(x, (D,), self.norm_ffn.weight, self.norm_ffn.bias, self.norm_ffn.eps)
        return x + torch.mm(self._act(torch.mm(h, w_fc1)), w_fc2)


def _identity(x: Tensor) -> Tensor:
    return x
