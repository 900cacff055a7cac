"""Random crops of codec tokens + captions for LM training, indexed by the global step (as audio_dataset).

Items come from token shards (`musiclm.data.shards.TokenShards(shard_dir, split)`, each item
dict(codes=LongTensor [K, T], caption, fields, id)); they are small enough to hold in memory (int16).
Batch `step` is a pure function of (seed, step, rank), so a resumed run sees exactly the same batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from musiclm.errors import MusicLMError


@dataclass
class TokenItem:
    codes: Tensor  # [K, T] int16 (cards up to 32768)
    caption: str
    id: str = ""


def load_token_items(
    shard_dirs: list[str], split: str, n_q: int, expect_fingerprint: str | None = None
) -> list[TokenItem]:
    """All items of `split` from the shard directories, keeping the first `n_q` codebooks; with
    `expect_fingerprint`, shards made by another codec are refused."""
    from musiclm.data.shards import TokenShards

    items: list[TokenItem] = []
    for shard_dir in shard_dirs:
        shards = TokenShards(shard_dir, split, expect_fingerprint=expect_fingerprint)
        for i in range(len(shards)):
            row = shards[i]
            codes = torch.as_tensor(row["codes"])
            if codes.dim() != 2 or codes.shape[0] < n_q:
                raise MusicLMError(
                    f"{shard_dir}: item {row.get('id')} has codes {list(codes.shape)}; need [K >= {n_q}, T]"
                )
            if codes.shape[1] == 0:
                continue
            items.append(TokenItem(codes[:n_q].to(torch.int16), str(row.get("caption") or ""), str(row.get("id", ""))))
    return items


def collate(crops: list[Tensor], captions: list[str], tokenizer, max_len: int) -> dict[str, Tensor]:
    ids, mask = tokenizer.encode(captions, max_len=max_len)
    return {"codes": torch.stack(crops), "text_ids": ids, "text_mask": mask}  # codes [B, K, T]


def _fit(codes: Tensor, frames: int, pad: int) -> Tensor:
    """[K, t] → [K, frames] int64; short items are padded with `pad` (the LM's special id: not a target)."""
    codes = codes.long()
    if codes.shape[1] >= frames:
        return codes[:, :frames]
    return torch.nn.functional.pad(codes, (0, frames - codes.shape[1]), value=pad)


class TokenCrops(Dataset):
    """Item `step` → dict(codes [B, K, T] (padding = `pad`), text_ids [B, L], text_mask [B, L])."""

    def __init__(
        self,
        items: list[TokenItem],
        frames: int,
        batch_size: int,
        seed: int,
        rank: int,
        tokenizer,
        max_len: int,
        pad: int,
    ):
        if not items:
            raise MusicLMError("no training tokens: the shards hold no item of the training split")
        self.items, self.frames, self.batch_size = items, frames, batch_size
        self.seed, self.rank, self.tokenizer, self.max_len, self.pad = seed, rank, tokenizer, max_len, pad
        lengths = np.array([it.codes.shape[1] for it in items], dtype=np.float64)
        self.probs = lengths / lengths.sum()  # longer items give proportionally more crops

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, int(step), self.rank])
        crops, captions = [], []
        for _ in range(self.batch_size):
            item = self.items[rng.choice(len(self.items), p=self.probs)]
            start = int(rng.integers(0, max(1, item.codes.shape[1] - self.frames + 1)))
            crops.append(_fit(item.codes[:, start:], self.frames, self.pad))
            captions.append(item.caption)
        return collate(crops, captions, self.tokenizer, self.max_len)


class FixedBatches(Dataset):
    """Validation: the first `frames` of each held-out item, in order, `batch_size` per batch."""

    def __init__(
        self, items: list[TokenItem], frames: int, batch_size: int, max_batches: int, tokenizer, max_len: int, pad: int
    ):
        items = items[: batch_size * max_batches]
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        self.frames, self.tokenizer, self.max_len, self.pad = frames, tokenizer, max_len, pad

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        batch = self.batches[index]
        crops = [_fit(it.codes, self.frames, self.pad) for it in batch]
        return collate(crops, [it.caption for it in batch], self.tokenizer, self.max_len)
