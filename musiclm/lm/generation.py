"""Captions → audio with a loaded `MusicLM`: the generation options (their defaults live here and nowhere
else), one seed per caption, and a decode that runs window by window so memory follows the window, not
the duration.

    captions --tokenizer--> ids/mask [B, L] --generate_codes (a generator per row)--> codes [B, K, T]
             --decode_windows (one item, DECODE_FRAMES at a time)--> wav blocks [C, L'] --> wav [B, C, N]

Seeds: caption i of a call gets `seed`, or `seed + r` when it is the r-th repeat of the same caption in
that call. A caption's audio therefore depends on its text and `seed` alone: the same alone, in a batch,
from a prompts file or from Python, while repeated captions still give different takes.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields, replace

import torch
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.lm.limits import DECODE_MODES, DEFAULT_DECODE, MAX_DURATION, MAX_SEED
from musiclm.lm.sample import SamplingParams, generate_codes

DECODE_FRAMES = 500  # codec frames decoded at once (10 s at 50 frames/s), plus the decoder's context
# Codebooks kept from the render by default (never all: the LM writes at least the last one). Of the shipped LM's
# 4, held-out melody agreement 0.19 / 0.41 / 0.47 with 0 / 2 / 3 kept (eval_melody.py --guide; checkpoints/README).
GUIDE_CODEBOOKS = 3


@dataclass(frozen=True)
class GenerationOptions:
    """How to generate; sampling fields left at None take the model's shipped defaults (`LMConfig`)."""

    duration: float = 10.0  # seconds of output, an audio prompt included
    seed: int | None = None  # None: fresh randomness on every call
    cfg: float | None = None  # classifier-free guidance; 1 = off
    note_cfg: float | None = None  # guidance on the notes given the text (default: the model's, else cfg)
    guide: int | None = None  # codebooks kept from a render of the notes (musiclm.notes.guide); None: GUIDE_CODEBOOKS
    # where FluidSynth is installed, else 0; 0: the LM writes every codebook
    temperature: float | None = None  # 0 = greedy
    top_k: int | None = None  # 0 = off
    top_p: float | None = None  # 0 = off
    decode: str = DEFAULT_DECODE  # "sample": decode the codes drawn; "mean": each cell as the mean embedding
    # of the codes it could have drawn, weighted by their probabilities (`soft_latent`); "auto": "mean" when a
    # guide is kept, else "sample"
    fp32: bool = False  # no reduced precision (default: bf16 KV cache where the hardware computes bf16)
    compile: bool = False  # torch.compile the one-step decode
    progress: bool = False  # a progress bar on stderr

    def check(self) -> None:
        """Raise MusicLMError for a value no model accepts (the codec's minimum is checked at generation)."""
        if not (0 < self.duration <= MAX_DURATION):  # also refuses NaN
            raise MusicLMError(f"duration must be in (0, {MAX_DURATION:g}] seconds, got {self.duration}")
        if self.seed is not None and not 0 <= self.seed < MAX_SEED:
            raise MusicLMError(f"seed must be an integer in [0, 2**64), got {self.seed}")
        if self.decode not in DECODE_MODES:
            raise MusicLMError(f"decode must be one of {', '.join(DECODE_MODES)}, got {self.decode!r}")
        if self.guide is not None and self.guide < 0:
            raise MusicLMError(f"guide must be a number of codebooks >= 0, got {self.guide}")
        given = {f.name: getattr(self, f.name) for f in fields(SamplingParams) if getattr(self, f.name) is not None}
        replace(SamplingParams(), **given).check()

    def sampling(self, model_config) -> SamplingParams:
        """The model's defaults, overridden where this sets a value."""
        chosen = {f.name: getattr(self, f.name) for f in fields(SamplingParams)}
        params = SamplingParams(**{k: getattr(model_config, k) if v is None else v for k, v in chosen.items()})
        params.check()
        return params


def item_seeds(texts: Sequence[str], seed: int | None) -> list[int | None]:
    """Each caption's seed: `seed` for its first occurrence in `texts`, seed + r for its r-th repeat."""
    if seed is None:
        return [None] * len(texts)
    repeats: Counter[str] = Counter()
    seeds = []
    for text in texts:
        seeds.append((seed + repeats[text]) % MAX_SEED)
        repeats[text] += 1
    return seeds


def output_length(codec, duration: float) -> tuple[int, int]:
    """(frames T, samples N) for `duration` seconds; at least one codec frame, else MusicLMError."""
    if duration * codec.frame_rate < 1 - 1e-9:
        raise MusicLMError(
            f"duration {duration:g} s is shorter than one codec frame: the minimum is "
            f"{1 / codec.frame_rate:g} s ({codec.frame_rate:g} frames/s)"
        )
    return math.ceil(duration * codec.frame_rate - 1e-9), round(duration * codec.sample_rate)


def generate_tokens(
    model,
    texts: Sequence[str] | str,
    options: GenerationOptions,
    prompt_wav: Tensor | None = None,
    seeds: Sequence[int | None] | None = None,
    notes: Tensor | None = None,
    guide: Tensor | None = None,
    soft: dict | None = None,
) -> Tensor:
    """Captions → codes [B, K, T] for `options.duration`; prompt_wav [B or 1, C, N0] (at the codec's rate)
    is continued. `seeds`: one per caption (default: `item_seeds(texts, options.seed)`). `notes`
    [B or 1, T', F]: note features per codec frame from the start; `guide` [B or 1, G, T']: codes kept for
    the first G codebooks (`generate_codes`; `musiclm.notes.guide`). `soft` (a dict): filled with the
    distribution each code was drawn from (`generate_codes`), for `soft_latent`."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise MusicLMError("no text prompt given")
    if model.tokenizer is None or model.codec is None:
        raise MusicLMError("this model has no tokenizer or codec attached; load it with MusicLM.from_pretrained")
    options.check()
    if notes is not None:
        model.check_notes(notes)  # before any audio is encoded
    codec = model.codec.to(model.device)
    n_frames, _ = output_length(codec, options.duration)
    prompt = None
    if prompt_wav is not None:
        if prompt_wav.dim() != 3:
            raise MusicLMError(f"expected prompt audio shaped [B, C, N], got {list(prompt_wav.shape)}")
        prompt_seconds = prompt_wav.shape[-1] / codec.sample_rate
        if prompt_seconds >= options.duration:
            raise MusicLMError(
                f"the prompt ({prompt_seconds:.2f} s) must be shorter than --duration "
                f"({options.duration:g} s), which counts the prompt too"
            )
        prompt = codec.encode(prompt_wav.to(model.device), n_q=model.n_q)
    ids, mask = model.tokenizer.encode(texts, model.config.text.max_len, pad_to_max=True)
    return generate_codes(
        model,
        ids,
        mask,
        n_frames,
        options.sampling(model.config),
        seed=list(seeds) if seeds is not None else item_seeds(texts, options.seed),
        prompt=prompt,
        progress=options.progress,
        compile=options.compile,
        amp_dtype=None if options.fp32 else torch.bfloat16,
        notes=notes,
        guide=guide,
        soft=soft,
    )


def generate_for_decoding(
    model, texts, options: GenerationOptions, prompt_wav=None, seeds=None, notes=None, guide=None
) -> tuple[Tensor, list[Tensor | None]]:
    """`generate_tokens`, and per item what `decode_windows` decodes in place of its codes: the mean latent
    (`soft_latent`) with `options.decode` "mean", or "auto" with a guide; else None (the codes themselves)."""
    mean = options.decode == "mean" or (options.decode == "auto" and guide is not None)
    soft = {} if mean else None
    codes = generate_tokens(model, texts, options, prompt_wav, seeds, notes, guide, soft)
    if soft is None:
        return codes, [None] * codes.shape[0]
    return codes, list(soft_latent(model.codec, soft).unbind(0))


def soft_latent(codec, soft: dict) -> Tensor:
    """The codec latent [B, D, T] that `generate_codes`'s `soft` distributions expect: each codebook's
    embedding averaged over the codes it would draw, weighted by their probabilities. Where the LM is sure
    this is its draw's latent; where it is unsure it is the mean-square-error optimum among its candidates
    (a residual codebook's draws scatter around it), instead of one draw's full-size guess."""
    candidates, probs = soft["candidates"], soft["probs"]  # [B, K, T, c]
    latent = 0
    for k, layer in enumerate(codec.quantizer.layers[: candidates.shape[1]]):
        latent = latent + (layer.decode(candidates[:, k]) * probs[:, k, ..., None].to(layer.embed.dtype)).sum(2)
    return latent.transpose(1, 2)  # [B, T, D] → [B, D, T]


def decoder_context(codec) -> int:
    """Frames of context each side that make window-by-window decoding match one-shot decoding (measured
    once per codec: `musiclm.codec.streaming.context_frames`)."""
    from musiclm.codec.streaming import context_frames

    return context_frames(codec)


@torch.no_grad()
def decode_windows(
    codec, codes: Tensor, num_samples: int, frames: int = DECODE_FRAMES, latent: Tensor | None = None
) -> Iterator[Tensor]:
    """codes [K, T] of one item → wav blocks [C, L] (num_samples in all) on the codec's device; with `latent`
    [D, T] (`soft_latent`'s, of the same item) that latent is decoded instead of the codes'.

    Overlap-discard, as `musiclm.codec.streaming.decode_chunks` (which runs on CPU only): each window of
    `frames` frames is decoded with the decoder's context on both sides and only its middle kept, so peak
    memory is that of one window whatever the duration."""
    hop, T = codec.hop_length, codes.shape[-1]
    assert T * hop >= num_samples, f"{T} frames cannot hold {num_samples} samples"
    context = decoder_context(codec) if T > frames else 0
    track = codec.new_phase_track()  # vocoder phase continues across windows (see decode_chunks)
    for t0 in range(0, T, frames):
        if t0 * hop >= num_samples:
            break
        t1 = min(T, t0 + frames)
        w0, w1 = max(0, t0 - context), min(T, t1 + context)
        if latent is None:
            wav = codec.decode(codes[None, :, w0:w1], frame_offset=w0, phase_track=track)[0]  # [C, (w1 - w0) * hop]
        else:
            wav = codec.decode_latent(latent[None, :, w0:w1], frame_offset=w0, phase_track=track)[0]
        if track is not None:
            track.keep_before(t1)
        yield wav[:, (t0 - w0) * hop : (t1 - w0) * hop][:, : num_samples - t0 * hop]


def generate_audio(
    model,
    texts: Sequence[str] | str,
    options: GenerationOptions,
    prompt_wav: Tensor | None = None,
    notes: Tensor | None = None,
    guide: Tensor | None = None,
) -> Tensor:
    """Captions (+ notes [B or 1, T, F], + guide codes [B or 1, G, T]) → wav [B, C, N] at
    `model.codec.sample_rate`, N = round(duration * sample_rate)."""
    codes, latents = generate_for_decoding(model, texts, options, prompt_wav, notes=notes, guide=guide)
    codec = model.codec
    _, n_samples = output_length(codec, options.duration)
    wav = torch.empty((codes.shape[0], codec.channels, n_samples), device=codes.device)
    for b in range(codes.shape[0]):  # one item at a time: its audio is the same in any batch
        start = 0
        for block in decode_windows(codec, codes[b], n_samples, latent=latents[b]):
            wav[b, :, start : start + block.shape[-1]] = block
            start += block.shape[-1]
        assert start == n_samples, f"decoded {start} of {n_samples} samples"
    return wav
