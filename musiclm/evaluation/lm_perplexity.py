"""Per-codebook perplexity of a MusicLM on held-out music.

Held-out tokens come from the test split of a manifest (split by piece, so no test piece was trained on):
each clip is encoded with the model's own codec, delayed, and scored by teacher forcing against its caption.
Encoding audio here instead of reading the token shards keeps the figure independent of how shards were
cut, at the cost of running the codec encoder (seconds per clip on CPU).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.evaluation.perplexity import PerplexityAccumulator


@torch.no_grad()
def lm_score_batch(
    model, codes: Tensor, texts: list[str], notes: Tensor | None = None
) -> tuple[Tensor, Tensor, Tensor]:
    """codes [B, K', T] (K' >= the LM's K) + captions (+ notes [B, T, F] for a note-conditioned LM) →
    (logits [B, K, S, card], targets [B, K, S], mask)."""
    from musiclm.lm import apply_delay

    if model.tokenizer is None:
        raise MusicLMError("this model has no tokenizer attached; load it with MusicLM.from_pretrained")
    delayed = apply_delay(codes[:, : model.n_q].to(model.device), model.special_id)  # [B, K, S]
    ids, mask = model.tokenizer.encode(list(texts), model.config.text.max_len)
    logits = model(delayed, ids.to(model.device), mask.to(model.device), notes)
    valid = model.valid_mask(delayed)  # the delay pattern's empty cells are not predictions
    return logits, delayed.masked_fill(~valid, -1), valid


@torch.no_grad()
def manifest_perplexity(
    model, manifest: str | Path, split: str = "test", clips: int = 16, seconds: float | None = None, batch_size: int = 4
) -> tuple[list[float], str]:
    """Perplexity per codebook [K] over up to `clips` clips of `split`, and a sentence saying what was scored."""
    from tqdm import tqdm

    from musiclm.audio import load_audio
    from musiclm.data.manifest import read_manifest, resolve_path

    if model is None or getattr(model, "codec", None) is None:
        raise MusicLMError("this model has no codec attached; load it with MusicLM.from_pretrained")
    if not Path(manifest).is_file():
        raise MusicLMError(f"no manifest at {manifest} for held-out perplexity")
    model.eval()
    codec = model.codec.to(model.device).eval()
    seconds = seconds or model.config.max_frames / model.config.frame_rate
    rows = sorted((r for r in read_manifest(manifest) if r["split"] == split and r["caption"]), key=lambda r: r["id"])[
        :clips
    ]
    if not rows:
        raise MusicLMError(f"{manifest}: no captioned clips in the {split} split")
    acc = PerplexityAccumulator()
    for start in tqdm(range(0, len(rows), batch_size), desc="perplexity", leave=False):
        batch = rows[start : start + batch_size]
        wavs = [
            load_audio(resolve_path(manifest, r), codec.sample_rate, codec.channels, duration=seconds)[0] for r in batch
        ]
        n = min(w.shape[-1] for w in wavs)  # equal lengths: no padding tokens to score
        codes = codec.encode(torch.stack([w[..., :n] for w in wavs]).to(model.device), n_q=model.n_q)
        acc.update(*lm_score_batch(model, codes, [r["caption"] for r in batch]))
    total = int(acc.count.sum()) if acc.count is not None else 0
    return acc.perplexity(), f"{len(rows)} {split}-split clips of ≤{seconds:g} s from {manifest} ({total} tokens)"


@torch.no_grad()
def shard_perplexity(
    model,
    shard_dir: str | Path,
    split: str = "test",
    clips: int = 64,
    max_frames: int | None = None,
    captions: str = "own",
) -> tuple[list[float], str]:
    """Perplexity per codebook [K] over up to `clips` clips of `split` in a token shard directory (made by
    `musiclm data tokenize` with the model's codec), each cropped to the model's training window.

    captions: "own" (each clip's caption), "none" (the null condition) or "other" (the caption of another
    clip, half the set away): how much lower "own" scores says how much the model uses its text."""
    if captions not in ("own", "none", "other"):
        raise MusicLMError(f"captions must be own, none or other, got {captions!r}")
    from tqdm import tqdm

    from musiclm.data.shards import TokenShards

    if model is None or getattr(model, "tokenizer", None) is None:
        raise MusicLMError("shard perplexity needs a MusicLM with its tokenizer")
    shards = TokenShards(shard_dir, split=split)
    if model.codec is not None:
        shards.check_codec(model.codec)  # tokens of another codec would mean nothing to this LM
    if shards.n_q < model.n_q or shards.card != model.card:
        raise MusicLMError(
            f"{shard_dir}: {shards.n_q} codebooks of {shards.card}, the LM needs {model.n_q} of {model.card}"
        )
    if len(shards) == 0:
        raise MusicLMError(f"{shard_dir}: no clips in the {split} split")
    model.eval()
    max_frames = max_frames or model.config.max_frames
    acc = PerplexityAccumulator()
    n = min(clips, len(shards))
    for i in tqdm(range(n), desc=f"perplexity ({captions} captions)", leave=False):
        item = shards[i]
        codes = item["codes"][None, :, :max_frames]  # [1, K, T]
        caption = {"own": item["caption"], "none": "", "other": shards[(i + n // 2) % n]["caption"]}[captions]
        acc.update(*lm_score_batch(model, codes, [caption]))
    return acc.perplexity(), f"{n} {split}-split clips of ≤{max_frames} frames from token shards {shard_dir}"
