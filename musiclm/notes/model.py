"""The planner: a small decoder-only transformer over planner sequences (`musiclm.notes.tokens`).

The blocks are `musiclm.nn`'s (pre-norm, causal self-attention only, no cross-attention: the condition is
the control prefix, as in a prompt-conditioned LM), with learned positions for a fixed context of
`max_len` tokens and the output head tied to the token embedding (Press & Wolf 2017).

Generation uses the same preallocated `KVCache` as the music LM: `new_cache` creates it, `step` writes the
keys and values of its input at explicit positions and returns the logits of the last one.

A directory holds config.json (model_type "musiclm-planner"), model.safetensors (fp16 when shipped) and
vocab.json (the token names, so a planner built with another tokenizer is refused on load).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from musiclm.config import from_dict, to_dict
from musiclm.errors import MusicLMError
from musiclm.nn.checkpoint import check_counts, check_shapes, read_config_json, read_shapes, save_weights
from musiclm.nn.transformer import Block, CachedStep, KVCache

MODEL_TYPE = "musiclm-planner"
CONFIG_NAME, WEIGHTS_NAME, VOCAB_NAME = "config.json", "model.safetensors", "vocab.json"


@dataclass
class PlannerConfig:
    name: str = "musiclm-planner"
    vocab_size: int = 0  # 0: the tokenizer's (`musiclm.notes.tokens.NoteTokenizer`)
    tokenizer_version: int = 1
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    ffn_dim: int = 1024
    max_len: int = 1024  # tokens of context, controls included
    dropout: float = 0.1


class Planner(nn.Module):
    def __init__(self, config: PlannerConfig):
        super().__init__()
        if config.vocab_size <= 0:
            raise MusicLMError("PlannerConfig.vocab_size must be set (the tokenizer's size)")
        self.config = config
        D = config.dim
        self.embed = nn.Embedding(config.vocab_size, D)
        self.pos = nn.Embedding(config.max_len, D)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(D, config.n_heads, config.ffn_dim, i, causal=True, cross=False, dropout=config.dropout)
            for i in range(config.n_layers)
        )
        self.norm = nn.LayerNorm(D)
        self.apply(self._init)

    @staticmethod
    def _init(m: nn.Module) -> None:
        # GPT-2 initialisation (nanoGPT): N(0, 0.02) for projections and embeddings
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    @property
    def device(self) -> torch.device:
        return self.embed.weight.device

    def forward(self, ids: Tensor) -> Tensor:
        """ids [B, S] (S <= max_len) → logits [B, S, V]."""
        S = ids.shape[1]
        assert S <= self.config.max_len, f"{S} tokens exceed the context of {self.config.max_len}"
        x = self.drop(self.embed(ids) + self.pos.weight[:S])
        for block in self.blocks:
            x = block(x)
        return self.norm(x) @ self.embed.weight.t()

    def loss(self, ids: Tensor, target_mask: Tensor) -> tuple[Tensor, Tensor]:
        """Next-token cross-entropy. ids [B, S]; target_mask [B, S] True where ids[:, s] is a target (predicted
        from s-1). Returns (mean loss, token count)."""
        logits = self(ids[:, :-1])
        targets = ids[:, 1:].masked_fill(~target_mask[:, 1:], -100)
        ce = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), ignore_index=-100, reduction="sum")
        count = target_mask[:, 1:].sum()
        return ce / count.clamp(min=1), count

    # ---- generation ---------------------------------------------------------------------------------------
    def new_cache(self, batch: int, dtype: torch.dtype | None = None) -> KVCache:
        c = self.config
        cache = KVCache(
            c.n_layers, batch, c.n_heads, c.dim // c.n_heads, c.max_len, dtype or self.embed.weight.dtype, self.device
        )
        cache.weights = [b.decode_weights(packed=True) for b in self.blocks]
        return cache

    def step(self, ids: Tensor, cache: KVCache, input_pos: Tensor) -> Tensor:
        """ids [B, S_in] at positions input_pos [S_in] (the prefix before them already cached) → logits
        [B, V] of the last position."""
        kv_len = int(input_pos[-1]) + 1
        step = CachedStep.make(cache, input_pos, kv_len)
        x = self.embed(ids) + self.pos(input_pos)[None]
        if ids.shape[1] == 1:
            h = x[:, 0]
            for block in self.blocks:
                h = block.decode_one(h, step)
        else:
            h = x
            for block in self.blocks:
                h = block(h, step=step)
            h = h[:, -1]
        return self.norm(h) @ self.embed.weight.t()

    # ---- directories --------------------------------------------------------------------------------------
    def save_pretrained(self, directory: str | Path, vocab: list[str], dtype: torch.dtype = torch.float16) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if len(vocab) != self.config.vocab_size:
            raise MusicLMError(f"vocabulary of {len(vocab)} tokens for a planner of {self.config.vocab_size}")
        (directory / CONFIG_NAME).write_text(json.dumps({"model_type": MODEL_TYPE, **to_dict(self.config)}, indent=2))
        (directory / VOCAB_NAME).write_text(json.dumps(vocab) + "\n")
        state = {k: v.detach().to(dtype).cpu().contiguous() for k, v in self.state_dict().items()}
        save_weights(state, directory / WEIGHTS_NAME, metadata={"model_type": MODEL_TYPE})
        return directory

    @classmethod
    def from_pretrained(cls, directory: str | Path, vocab: list[str] | None = None) -> Planner:
        """Load a planner directory; with `vocab` (the tokenizer's names), one made for other tokens is refused.
        A missing, foreign or inconsistent directory raises MusicLMError before anything large is built."""
        directory = Path(directory)
        path = directory / CONFIG_NAME
        meta = read_config_json(directory, "planner")
        if meta.pop("model_type", None) != MODEL_TYPE:
            raise MusicLMError(f"{path}: not a musiclm planner config")
        config = from_dict(PlannerConfig, meta)
        if vocab is not None:
            saved = json.loads((directory / VOCAB_NAME).read_text()) if (directory / VOCAB_NAME).is_file() else None
            if saved != vocab:
                raise MusicLMError(f"{directory}: the planner was made for another note vocabulary (miditok version?)")
        weights = directory / WEIGHTS_NAME
        shapes = read_shapes(weights)
        check_counts(shapes, weights, [("n_layers", config.n_layers, "blocks.")])
        check_shapes(lambda: cls(config), shapes, weights)
        from safetensors.torch import load_file

        model = cls(config)
        model.load_state_dict({k: v.float() for k, v in load_file(str(weights)).items()})
        return model.eval()
