"""Captions → token ids through SentencePiece (Kudo & Richardson 2018).

The ids are whatever the `.model` file says, so a model directory keeps its own copy (`tokenizer.model`)
and the ids it was trained with stay stable. Batches are padded to the longest caption (at most `max_len`)
with a boolean mask; an empty caption gives an all-False row, which the LM reads as the null condition.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from musiclm.errors import MusicLMError


class TextTokenizer:
    def __init__(self, model_path: str | Path, add_eos: bool = False):
        import sentencepiece as spm

        self.path = Path(model_path)
        if not self.path.is_file():
            raise MusicLMError(f"tokenizer model not found: {self.path}")
        self.sp = spm.SentencePieceProcessor()
        try:
            self.sp.Load(str(self.path))
        except Exception as e:  # sentencepiece raises OSError/RuntimeError for bad files
            raise MusicLMError(f"{self.path}: not a SentencePiece model ({e})") from None
        self.add_eos = add_eos

    @property
    def vocab_size(self) -> int:
        return self.sp.GetPieceSize()

    @property
    def pad_id(self) -> int:
        # SentencePiece disables padding by default (pad_id -1); any id works there since the mask hides it
        pad = self.sp.pad_id()
        return pad if pad >= 0 else 0

    @property
    def eos_id(self) -> int:
        return self.sp.eos_id()

    def encode(self, texts: list[str] | str, max_len: int = 64, pad_to_max: bool = False) -> tuple[Tensor, Tensor]:
        """texts → (ids [B, L] int64, mask [B, L] bool), L = min(longest, max_len) and at least 1.

        pad_to_max: L = max_len, whatever the batch holds, so a caption's tensors (and every sum the model
        makes over them) are the same alone and beside longer captions: generation is then bit-exact per
        caption in any batch."""
        if isinstance(texts, str):
            texts = [texts]
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        pieces = [self.sp.EncodeAsIds(t) if t.strip() else [] for t in texts]
        if self.add_eos and self.eos_id >= 0:
            # T5 ends every sequence with </s>; keep it inside max_len
            pieces = [p[: max_len - 1] + [self.eos_id] if p else [] for p in pieces]
        pieces = [p[:max_len] for p in pieces]
        length = max_len if pad_to_max else max(1, max((len(p) for p in pieces), default=0))
        ids = torch.full((len(pieces), length), self.pad_id, dtype=torch.int64)
        mask = torch.zeros((len(pieces), length), dtype=torch.bool)
        for i, p in enumerate(pieces):
            ids[i, : len(p)] = torch.tensor(p, dtype=torch.int64)
            mask[i, : len(p)] = True
        return ids, mask

    def decode(self, ids: list[int]) -> str:
        return self.sp.DecodeIds(list(ids))
