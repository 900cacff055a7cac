"""Random crops of codec tokens + captions for LM training, indexed by the global step (as audio_dataset).

Items come from token shards (`musiclm.data.shards.TokenShards(shard_dir, split)`, each item
dict(codes=LongTensor [K, T], caption, fields, id, notes, chroma)); they are small enough to hold in memory
(int16 codes; uint8 notes and int8 chroma only when the LM is note-conditioned).
Batch `step` is a pure function of (seed, step, rank), so a resumed run sees exactly the same batches.

For a note-conditioned LM (`note_features` F > 0) each example also gets notes [T, F], cropped with the same
start as its codes, in one of three views drawn with the crop:
    none     zeros, with probability `note_dropout` (the text alone must still work)
    chroma   the clip's audio chroma in columns 0:12 (`chroma_view`), for `chroma_share` of the rest: what
             `--melody tune.wav` gives at inference (MusicGen-melody's condition, Copet et al. 2023 §2.4)
    notes    the MIDI piano roll (a clip without MIDI falls back to its chroma, then to none)
"""

from __future__ import annotations

from dataclasses import dataclass, replace

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
    notes: Tensor | None = None  # [T, 48] uint8 0/1 piano-roll features (`piano_roll_features`)
    chroma: Tensor | None = None  # [T] int8 pitch class of the audio, -1 silent


@dataclass(frozen=True)
class NoteViews:
    """How a note-conditioned LM's examples see their notes (`LMConfig` note_* fields)."""

    features: int  # F (0: no notes in the batch)
    dropout: float = 0.3
    chroma_share: float = 0.3

    def __post_init__(self):
        for name in ("dropout", "chroma_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise MusicLMError(f"note {name} must be in [0, 1], got {getattr(self, name)}")

    @classmethod
    def of(cls, config) -> NoteViews:
        return cls(config.note_features, config.note_dropout, config.chroma_share)


def chroma_one_hot(chroma: Tensor) -> Tensor:
    """chroma [T] int8 pitch class (-1 silent) → [T, 12] float one-hot, zeros where silent."""
    out = torch.zeros(chroma.shape[0], 12)
    voiced = chroma >= 0
    out[voiced.nonzero()[:, 0], chroma[voiced].long()] = 1.0
    return out


def note_view(item: TokenItem, view: str, start: int, frames: int, features: int) -> Tensor:
    """notes [frames, F] float of `item` from frame `start` (zeros past its end) in `view`: "none",
    "chroma" or "notes" (falling back to chroma, then none, when the item lacks them)."""
    from musiclm.notes.condition import chroma_view

    out = torch.zeros(frames, features)
    if view == "notes" and item.notes is None:
        view = "chroma"
    if view == "chroma" and item.chroma is None:
        view = "none"
    if view == "none":
        return out
    if view == "notes":
        part = item.notes[start : start + frames, :features].float()
    else:
        part = chroma_view(chroma_one_hot(item.chroma[start : start + frames]))[:, :features]
    out[: part.shape[0]] = part
    return out


def load_token_items(
    shard_dirs: list[str], split: str, n_q: int, expect_fingerprint: str | None = None, notes: bool = False
) -> list[TokenItem]:
    """All items of `split` from the shard directories, keeping the first `n_q` codebooks; with
    `expect_fingerprint`, shards made by another codec are refused; with `notes`, the note features and
    chroma the shards hold come along (T equal to the codes')."""
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
            item = TokenItem(codes[:n_q].to(torch.int16), str(row.get("caption") or ""), str(row.get("id", "")))
            if notes:
                item.notes, item.chroma = row.get("notes"), row.get("chroma")
                for name, value in (("notes", item.notes), ("chroma", item.chroma)):
                    frames = codes.shape[1]
                    assert value is None or value.shape[0] == frames, (
                        f"{shard_dir}: item {item.id} has {value.shape[0]} frames of {name}, {frames} of codes"
                    )
            items.append(item)
    return items


def trim_trailing_silence(items: list[TokenItem], keep_frames: int) -> list[TokenItem]:
    """Items whose chroma ends in silent frames (-1) keep at most `keep_frames` of them (the release). A
    crop that runs into a clip's silent tail teaches that silence is never followed by sound; at generation
    from text alone one silent frame then held to the end of the audio. Items without chroma are kept whole."""
    out = []
    for item in items:
        if item.chroma is not None and len(item.chroma):
            sounding = torch.nonzero(torch.as_tensor(item.chroma) >= 0)
            if not len(sounding):
                continue  # silent throughout: nothing to learn from
            end = min(len(item.chroma), int(sounding[-1]) + 1 + keep_frames)
            if end < len(item.chroma):
                item = replace(item, codes=item.codes[:, :end], chroma=item.chroma[:end],
                               notes=None if item.notes is None else item.notes[:end])  # fmt: skip
        out.append(item)
    return out


def collate(
    crops: list[Tensor], captions: list[str], tokenizer, max_len: int, notes: list[Tensor] | None = None
) -> dict[str, Tensor]:
    ids, mask = tokenizer.encode(captions, max_len=max_len)
    batch = {"codes": torch.stack(crops), "text_ids": ids, "text_mask": mask}  # codes [B, K, T]
    if notes:
        batch["notes"] = torch.stack(notes)  # [B, T, F]
    return batch


def _fit(codes: Tensor, frames: int, pad: int) -> Tensor:
    """[K, t] → [K, frames] int64; short items are padded with `pad` (the LM's special id: not a target)."""
    codes = codes.long()
    if codes.shape[1] >= frames:
        return codes[:, :frames]
    return torch.nn.functional.pad(codes, (0, frames - codes.shape[1]), value=pad)


class TokenCrops(Dataset):
    """Item `step` → dict(codes [B, K, T] (padding = `pad`), text_ids [B, L], text_mask [B, L], and with
    `note_views.features` F > 0 notes [B, T, F])."""

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
        note_views: NoteViews | None = None,
    ):
        if not items:
            raise MusicLMError("no training tokens: the shards hold no item of the training split")
        self.items, self.frames, self.batch_size = items, frames, batch_size
        self.seed, self.rank, self.tokenizer, self.max_len, self.pad = seed, rank, tokenizer, max_len, pad
        self.note_views = note_views or NoteViews(0)
        lengths = np.array([it.codes.shape[1] for it in items], dtype=np.float64)
        self.probs = lengths / lengths.sum()  # longer items give proportionally more crops

    def __len__(self) -> int:
        return 2**62

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        rng = np.random.default_rng([self.seed, int(step), self.rank])
        # the views come from a stream of their own: a note LM sees the same crops as a text-only LM
        view_rng = np.random.default_rng([self.seed, int(step), self.rank, 1])
        crops, captions, notes = [], [], []
        v = self.note_views
        for _ in range(self.batch_size):
            item = self.items[rng.choice(len(self.items), p=self.probs)]
            start = int(rng.integers(0, max(1, item.codes.shape[1] - self.frames + 1)))
            crops.append(_fit(item.codes[:, start:], self.frames, self.pad))
            captions.append(item.caption)
            if v.features > 0:
                u = view_rng.random(2)
                view = "none" if u[0] < v.dropout else "chroma" if u[1] < v.chroma_share else "notes"
                notes.append(note_view(item, view, start, self.frames, v.features))
        return collate(crops, captions, self.tokenizer, self.max_len, notes)


class FixedBatches(Dataset):
    """Validation: the first `frames` of each held-out item, in order, `batch_size` per batch; with
    `note_features` F > 0 also notes [B, T, F] (the MIDI view) and notes_chroma [B, T, F] (the chroma view)."""

    def __init__(
        self,
        items: list[TokenItem],
        frames: int,
        batch_size: int,
        max_batches: int,
        tokenizer,
        max_len: int,
        pad: int,
        note_features: int = 0,
    ):
        items = items[: batch_size * max_batches]
        self.batches = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
        self.frames, self.tokenizer, self.max_len, self.pad = frames, tokenizer, max_len, pad
        self.note_features = note_features

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        batch = self.batches[index]
        crops = [_fit(it.codes, self.frames, self.pad) for it in batch]
        out = collate(crops, [it.caption for it in batch], self.tokenizer, self.max_len)
        if self.note_features > 0:
            for key, view in (("notes", "notes"), ("notes_chroma", "chroma")):
                out[key] = torch.stack([note_view(it, view, 0, self.frames, self.note_features) for it in batch])
        return out
