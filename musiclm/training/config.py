"""Typed training configs. A YAML file in `configs/codec/` or `configs/lm/` overrides only these fields.

    codec: CodecConfig          the model (musiclm.codec)
    data: AudioDataConfig       manifests, crop length, batch size, augmentation
    loss: CodecLossConfig       loss weights, discriminator and balancer switches
    optim: OptimConfig          Adam(W) settings, gradient clipping, schedule
    trainer: TrainerConfig      steps, checkpoint/log cadence, devices, precision, logging
and for the LM: lm (LMConfig), data (TokenDataConfig), optim, trainer, codec, init_from.

`TrainerConfig` is shared by the codec and the LM recipes, so both run through the same runner and callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from musiclm.codec import CodecConfig
from musiclm.config import from_dict, load_yaml, to_dict
from musiclm.errors import MusicLMError
from musiclm.lm.model import LMConfig


@dataclass
class TrainerConfig:
    seed: int = 1234
    max_steps: int = 100_000
    # Stop after this much training wall time (Lightning's max_time; checkpoint and export as at max_steps):
    # recipes compared at equal cost, or the minutes of a lent GPU machine. 0: no limit.
    max_minutes: float = 0.0
    checkpoint_every: int = 200  # steps between resumable checkpoints (a SIGKILL loses at most this many)
    log_every: int = 10  # steps between CSV/wandb scalar rows
    sample_every: int = 1000  # steps between audio samples + spectrogram images (0: never)
    val_every: int = 0  # steps between validation passes (LM); 0: never
    devices: int = 1
    num_nodes: int = 1
    strategy: str = "auto"  # "auto", "ddp", "fsdp" (passed to Lightning)
    accelerator: str = "auto"
    precision: str = "auto"  # "auto": bf16-mixed on CUDA, 32 on CPU
    num_threads: int = 2  # torch intra-op threads on CPU
    num_workers: int = 1  # data loader worker processes
    wandb: bool = True  # offline by default (WANDB_MODE=offline); falls back to CSV only on any failure
    wandb_project: str = "musiclm"
    progress_every: int = 1  # tqdm refresh rate in steps


@dataclass
class OptimConfig:
    lr: float = 3e-4
    betas: tuple[float, float] = (0.5, 0.9)
    weight_decay: float = 0.0
    grad_clip: float = 1.0  # max global L2 norm; 0 disables
    warmup_steps: int = 0  # linear warm-up, then `schedule`
    schedule: str = "constant"  # "constant" or "cosine" (to min_lr_ratio * lr at trainer.max_steps)
    min_lr_ratio: float = 0.1
    decay_start: int = 0  # cosine: stay at lr until this step (0: decay right after the warm-up)
    schedule_steps: int = 0  # length of the cosine; 0: trainer.max_steps (fix it so --max-steps keeps the curve)


@dataclass
class AudioDataConfig:
    manifests: list[str] = field(default_factory=list)  # JSONL: path (relative to the manifest), duration, split
    manifest_weights: list[float] = field(default_factory=list)  # per manifest; empty: by total duration
    split: str = "train"
    segment_seconds: float = 1.0  # crop length
    batch_size: int = 8
    gain_db: tuple[float, float] = (-10.0, 6.0)  # uniform random gain (augmentation), then peak-limited to 1
    min_duration: float = 0.5  # rows shorter than this are skipped
    tone_melody_share: float = 0.0  # share of crops with a synthetic melody mixed in (training/tone_melody.py)
    # Held-out rows (split == sample_split) give the fixed audio samples logged every trainer.sample_every.
    # Folders of searched latents (train/search_latents.py) that the encoder learns to output (`loss.latent`),
    # `latent_batch_size` clips of them a step beside the crops above.
    latent_targets: list[str] = field(default_factory=list)
    latent_batch_size: int = 4
    sample_split: str = "test"
    num_samples: int = 2
    sample_seconds: float = 4.0


@dataclass
class CodecLossConfig:
    # EnCodec §3.4 weights: λ_t = 0.1 (time L1), λ_f = 1 (frequency), λ_g = 3 (adversarial), λ_feat = 3, λ_w = 1.
    l1: float = 0.1
    mel: float = 1.0
    stft: float = 1.0
    commit: float = 1.0
    adversarial: bool = False
    adv: float = 3.0
    feat: float = 3.0
    adv_warmup_steps: int = 2000  # the discriminator joins after this many steps
    # The discriminator alone learns for this many steps before adv_warmup_steps, seeing the generator's
    # output without sending it anything: a fine-tuning phase that starts the adversarial terms on a
    # trained generator then hears a discriminator that already tells real from decoded, not a fresh one's
    # noise (HiFi-GAN-style fine-tuning). 0: both start together at adv_warmup_steps.
    disc_warmup_steps: int = 0
    disc_filters: int = 32
    disc_n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128)
    disc_compress: float = 0.3  # the discriminator sees |X|^c (musiclm.training.discriminator); 1 = raw STFT
    disc_bf16: bool = False  # its convolutions under bf16 autocast (a GPU's speed-up; the STFT stays fp32)
    disc_lr: float = 0.0  # the discriminator's learning rate (same schedule); 0: optim.lr. A fine-tuning phase on a
    # CPU budget wants it higher than the generator's: a discriminator that has not learnt sends only noise
    balancer: bool = False  # EnCodec §3.4 gradient balancer over the losses on the reconstruction
    balancer_ema: float = 0.999
    mel_n_ffts: tuple[int, ...] = (2048, 1024, 512, 256, 128, 64)  # windows 2^i, i = 6..11 (EnCodec)
    mel_bins: int = 64
    stft_n_ffts: tuple[int, ...] = (2048, 1024, 512)
    # Losses that hear notes and phase (issue 11); 0 switches them off.
    cqt: float = 0.0  # multi-scale pseudo-CQT log-magnitude L1 (FlowDec)
    cqt_n_ffts: tuple[int, ...] = (8192, 4096)
    complex_stft: float = 0.0  # compressed complex spectrum (Braun & Tashev 2021)
    complex_n_ffts: tuple[int, ...] = (2048, 512, 128)
    # Spectral convergence alone at stft_n_ffts (losses.SpectralConvergenceLoss): linear magnitudes, where a
    # note's loud partials outweigh the many quiet bins that every log-magnitude term weighs alike.
    convergence: float = 0.0
    # Onset-strength curves compared (losses.OnsetFluxLoss): asks for attacks where they are, which the
    # frame-averaged terms above barely weigh.
    onset: float = 0.0
    onset_n_ffts: tuple[int, ...] = (1024, 512)
    delta: float = 0.0  # per-bin change over time (losses.SpectralDeltaLoss): partials that flutter or run on
    delta_n_ffts: tuple[int, ...] = (2048, 1024)
    # basic-pitch's posteriorgrams of output against reference (losses.NotePosteriorLoss; needs the eval
    # extra). The evaluation's own transcriber: it bought note F1 with SI-SNR and attacks when measured, and
    # no recipe uses it; a decoder trained with it must be judged on the other figures.
    notes: float = 0.0
    # The encoder's latent against latents found by searching through the frozen decoder (`data.latent_targets`;
    # training.latent_targets.latent_distance), added to the balanced reconstruction gradient with this
    # weight: amortised analysis-by-synthesis. Needs freeze_decoder (the targets were heard through it).
    latent: float = 0.0
    # Phase-sensitive terms (time L1, the complex part of complex_stft) only below this frequency; 0: full band.
    # A decoder that cannot match a partial's phase is told by them that silence costs less than the partial
    # at a wrong phase (twice less in L2), so it drops what it cannot phase-match: the shipped codec kept
    # steady sines only at the pitches its notes used, and none above ~1 kHz (eval/codec_tones.py --sweep).
    # Above the cutoff only magnitudes are asked for; hearing is insensitive to the phase of high partials.
    phase_cutoff_hz: float = 0.0


@dataclass
class CodecTrainConfig:
    codec: CodecConfig = field(default_factory=CodecConfig)
    data: AudioDataConfig = field(default_factory=AudioDataConfig)
    loss: CodecLossConfig = field(default_factory=CodecLossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    # A codec directory (save_pretrained) to start from, e.g. the shipped checkpoints/codec, so training
    # continues across sessions and machines (the optimizer starts afresh). Its config must match `codec`.
    init_from: str | None = None
    # Train the decoder only: encoder and codebooks stay fixed, so the codes do not change and an LM can
    # train on tokens from this codec while its decoder keeps improving.
    freeze_encoder: bool = False
    # Keep the codebooks fixed while encoder and decoder train: each code keeps its meaning to the decoder and
    # to an LM trained on this codec, so that LM fine-tunes on re-tokenized data rather than starting over.
    freeze_codebooks: bool = False
    # Train the encoder only, against a fixed decoder and fixed codebooks: every code keeps its sound, and the
    # encoder learns to pick the codes the decoder plays closest to the input. Measured 2026-11-30: a latent
    # fitted to a clip through the frozen decoder plays attacks the encoder's own latent smears (onset
    # envelope correlation 0.62-0.69 → 0.82), so the decoder can and the encoder never asks. An LM trained on
    # this codec's codes fine-tunes on re-tokenized data (the codes mean what they meant).
    freeze_decoder: bool = False
    # Codebook counts that quantizer dropout draws beside those of `codec.bandwidths`, e.g. [4]: the shipped LM
    # writes 4 codebooks (2 kbps), a prefix the bandwidths alone (3/6/12/24) never train the decoder on.
    extra_n_qs: list[int] = field(default_factory=list)


@dataclass
class TokenDataConfig:
    shards: list[str] = field(default_factory=list)  # token shard directories (`musiclm data tokenize`)
    tokenizer: str = "tokenizer/captions.model"  # SentencePiece model; copied into the exported model
    split: str = "train"
    val_split: str = "valid"
    frames: int = 500  # crop length T in codec frames (10 s at 50 Hz)
    batch_size: int = 8
    val_batches: int = 8  # fixed validation batches (crops from the start of each held-out item)
    # training items keep at most this many silent frames after their last sound (the chroma says which are
    # silent; `trim_trailing_silence`); None keeps them whole. Validation items are never trimmed.
    trailing_silence_frames: int | None = 10
    # Prompts for the audio samples logged every trainer.sample_every steps (needs `codec`).
    sample_prompts: list[str] = field(default_factory=list)
    sample_seconds: float = 4.0


@dataclass
class LMTrainConfig:
    lm: LMConfig = field(default_factory=LMConfig)
    data: TokenDataConfig = field(default_factory=TokenDataConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=5e-4, betas=(0.9, 0.95), weight_decay=0.1, grad_clip=1.0, warmup_steps=500, schedule="cosine"
        )
    )
    trainer: TrainerConfig = field(default_factory=lambda: TrainerConfig(val_every=500))
    codec: str | None = None  # codec directory the shards were made with (samples; linked from the export)
    init_from: str | None = None  # LM directory to start from; its `lm` wins, bar the TRAINING_FIELDS a recipe sets
    # Parameter-name prefixes that train (e.g. ["blocks.5.", "norm.", "heads."]); empty: all of them.
    train_only: list[str] = field(default_factory=list)
    # With init_from: modules drawn afresh before training (regexes on the full module name, e.g.
    # ["text_encoder", "blocks\\.\\d+\\.cross_attn"]), to retrain a part that learned nothing.
    reinit: list[str] = field(default_factory=list)


def load_train_config(cls: type, path: str | Path | None, overrides: dict[str, Any] | None = None):
    """Defaults of `cls`, overridden by the YAML at `path` and then by `overrides` (nested dicts merge)."""
    data = load_yaml(path) if path is not None else {}
    merged = to_dict(cls())
    for source in (data, overrides or {}):
        for key, value in source.items():
            if key not in merged:
                raise MusicLMError(f"{path or cls.__name__}: unknown section {key!r}; known: {sorted(merged)}")
            merged[key] = _merge(merged[key], value)
    return from_dict(cls, merged)


def _merge(base: Any, value: Any) -> Any:
    if isinstance(base, dict) and isinstance(value, dict):
        out = dict(base)
        for k, v in value.items():
            out[k] = _merge(base[k], v) if k in base else v  # unknown keys reach from_dict, which names them
        return out
    return value
