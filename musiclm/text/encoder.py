"""Text encoders: captions (token ids) → memory [B, L, Dt] the LM cross-attends to.

`trainable`: a small pre-norm transformer encoder trained with the LM (cheap; knows only the words of
the captions it saw). `t5`: a frozen pretrained T5 encoder (as MusicGen, Copet et al. 2023 §2.3), built from
a local transformers directory, so unseen words still mean something. Its weights are saved inside the
LM's model.safetensors and its T5Config inside config.json, so a model directory stays self-contained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from musiclm.errors import MusicLMError
from musiclm.nn.transformer import Block, sinusoidal_embedding


@dataclass
class TextConfig:
    kind: str = "trainable"  # "trainable" or "t5"
    vocab_size: int = 1024  # of the tokenizer
    dim: int = 256  # Dt, the memory width (projected to the LM width when different)
    n_layers: int = 2
    n_heads: int = 4
    ffn_dim: int = 1024
    max_len: int = 64  # caption tokens kept
    add_eos: bool = False  # T5 expects </s> at the end
    dropout: float = 0.0
    # Token embeddings are multiplied by this (None: sqrt(dim), as Vaswani et al. 2017). With 1, words start
    # at std 0.02 beside sinusoidal positions of rms 0.7: the memory is all position, its gradient tiny, and
    # the first shipped model's encoder collapsed to one vector for every caption (it ignored its text).
    embed_scale: float | None = None
    t5_config: dict[str, Any] | None = None  # kind "t5": the transformers T5Config as a dict


class TrainableTextEncoder(nn.Module):
    def __init__(self, config: TextConfig):
        super().__init__()
        self.config = config
        self.embed = nn.Embedding(config.vocab_size, config.dim)
        self.blocks = nn.ModuleList(
            Block(config.dim, config.n_heads, config.ffn_dim, i, causal=False, cross=False, dropout=config.dropout)
            for i in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(config.dim)

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        """ids, mask [B, L] → [B, L, Dt]."""
        scale = self.config.embed_scale if self.config.embed_scale is not None else self.config.dim**0.5
        positions = sinusoidal_embedding(torch.arange(ids.shape[1], device=ids.device), self.config.dim)
        x = self.embed(ids) * scale + positions.to(self.embed.weight.dtype)
        for block in self.blocks:
            x = block(x, key_mask=mask)
        return self.norm(x)


class T5TextEncoder(nn.Module):
    """A frozen transformers `T5EncoderModel`: never trained here, always in eval mode."""

    def __init__(self, config: TextConfig):
        super().__init__()
        from transformers import T5Config, T5EncoderModel

        if not config.t5_config:
            raise MusicLMError("text encoder kind 't5' needs t5_config")
        self.config = config
        self.t5 = T5EncoderModel(T5Config.from_dict(config.t5_config))
        self.t5.requires_grad_(False)
        self.t5.eval()

    def train(self, mode: bool = True) -> T5TextEncoder:
        super().train(mode)
        self.t5.eval()  # frozen: dropout stays off even while the LM trains
        return self

    def forward(self, ids: Tensor, mask: Tensor) -> Tensor:
        with torch.no_grad():
            return self.t5(input_ids=ids, attention_mask=mask.long()).last_hidden_state


def build_text_encoder(config: TextConfig) -> nn.Module:
    if config.kind == "trainable":
        return TrainableTextEncoder(config)
    if config.kind == "t5":
        return T5TextEncoder(config)
    raise MusicLMError(f"unknown text encoder kind {config.kind!r}; use 'trainable' or 't5'")


def t5_text_config(directory: str | Path, max_len: int = 64) -> tuple[TextConfig, dict[str, Tensor]]:
    """A local transformers T5 directory → (TextConfig of kind 't5', encoder state dict to load)."""
    from transformers import T5EncoderModel

    directory = Path(directory)
    if not (directory / "config.json").is_file():
        raise MusicLMError(f"{directory}: not a transformers T5 directory (no config.json)")
    model = T5EncoderModel.from_pretrained(str(directory), local_files_only=True)
    t5_config = model.config.to_dict()
    config = TextConfig(
        kind="t5",
        vocab_size=model.config.vocab_size,
        dim=model.config.d_model,
        n_layers=model.config.num_layers,
        n_heads=model.config.num_heads,
        ffn_dim=model.config.d_ff,
        max_len=max_len,
        add_eos=True,
        t5_config=t5_config,
    )
    return config, {f"t5.{k}": v for k, v in model.state_dict().items()}
