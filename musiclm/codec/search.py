"""Analysis-by-synthesis encoding: codes chosen by listening to what the decoder makes of them.

The encoder maps audio to a latent in one pass, and the quantizer takes the nearest codes. Neither knows
what the decoder will play. Here the latent starts where the encoder puts it and takes a few Adam steps
through the quantizer (straight-through) and the frozen decoder, towards the input: the waveform L1 plus
log-magnitude L1 and spectral convergence at five windows (256-4096 points), the objective measured in
eval/codec_latent_fit.py (`ReconstructionError`; its constant-Q term is off, SEARCH_CQT_WEIGHT). This is
how CELP speech codecs choose their excitation (Schroeder & Atal 1985, "Code-excited linear prediction"): the
bitstream and the decoder stay the same; only encoding is slower.

Measured with the shipped codec at 6 kbps on 16 real + 16 rendered held-out clips of 10 s, through the
compressor (eval/codec_curve.py --search STEPS; train/README.md, "codes chosen by listening"): 40 steps
(~30 s per 10 s on one thread) raise chroma agreement 0.865 → 0.888 (real) and 0.779 → 0.856 (rendered),
onset agreement 0.479 → 0.573 on real music, SI-SNR by 0.3-0.4 dB; note F1 0.455 → 0.462 and 0.535 → 0.546,
within the noise of 16 clips. 100 steps: note F1 0.483 / 0.552 (Opus CBR 12 kbps: 0.474 / 0.544), ViSQOL
3.22 → 3.75 / 3.40 → 3.87. On 48 real clips, 100 steps against the encoder: note F1 0.465 → 0.516, paired
+0.051 [+0.027, +0.077]; Opus CBR 12 kbps 0.500.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from musiclm.dsp import cqt_magnitude, stft_magnitude
from musiclm.errors import MusicLMError

SEARCH_N_FFTS = (256, 512, 1024, 2048, 4096)
# Adam on the latent, whose values are O(1). Faster rates reach further by the search's own objective (on 6
# training clips, eval/search_schedule.py: 15 steps at 0.15 remove as much of it as 100 at 0.01) but keep
# fewer notes: on 48 held-out real clips at 6 kbps, 15 steps at 0.15 gave note F1 0.477 and SI-SNR 7.38 dB
# against 100 steps at 0.01's 0.516 and 7.68 (paired: -0.039 [-0.067, -0.013]; train/README.md, twenty-second
# session). Note F1 leads, so the rate stays 0.01.
SEARCH_LR = 0.01
# The log constant-Q term (ReconstructionError): its windows, hop (n_fft / 16: most of the term's cost; n_fft / 4
# would cost ~5x less, not measured for notes) and bands an octave.
CQT_N_FFTS = (8192, 4096)
CQT_HOP_DIVISOR = 16
CQT_BINS_PER_OCTAVE = 36
# Off. On 6 + 6 training clips of 8 s, 100 steps at 6 kbps (eval/search_objective.py), weight 8 kept more notes
# (note F1 0.534 against 0.482, +0.052 [+0.025, +0.079]). Through the compressor on the first 20 + 20 held-out
# clips it did not: note F1 +0.003 [-0.016, +0.020] (real) and +0.003 [-0.023, +0.025] (rendered) against no
# term, SI-SNR -0.33 and -1.28 dB, chroma on renders 0.905 -> 0.853, ViSQOL 3.67 -> 3.60, each step ~1.9x
# slower (train/README.md, twenty-third session).
SEARCH_CQT_WEIGHT = 0.0
SCHEDULES = ("constant", "cosine")  # the learning rate over a search's steps (cosine: to 0 at the last)


class ReconstructionError:
    """The search's objective against one target [B, C, N], its spectra computed once: waveform L1 + Σ over
    `n_ffts` (log-magnitude L1 + spectral convergence) + `cqt_weight` × Σ over CQT_N_FFTS of the log
    constant-Q L1 (`musiclm.dsp.cqt_magnitude`, 3 bands a semitone as basic-pitch hears them). The STFT terms
    weigh each linear-frequency bin alike, so most of their weight lies above 2.5 kHz, where few fundamentals
    are, and a 4096-point window (5.9 Hz bins) cannot part neighbouring low notes; the constant-Q term weighs
    each semitone alike (FlowDec, ICLR 2025, adds one to discriminator-free training for the same reason)."""

    def __init__(
        self,
        target: Tensor,
        n_ffts: tuple[int, ...] = SEARCH_N_FFTS,
        cqt_weight: float = SEARCH_CQT_WEIGHT,
        sample_rate: int = 24000,
    ):
        self.target, self.n_ffts, self.cqt_weight, self.sample_rate = target, n_ffts, cqt_weight, sample_rate
        with torch.no_grad():
            self.magnitudes = [stft_magnitude(target, n_fft, n_fft // 4) for n_fft in n_ffts]
            self.log_magnitudes = [torch.log(m + 1e-5) for m in self.magnitudes]
            self.log_cqts = {n_fft: torch.log(self._cqt(target, n_fft)) for n_fft in CQT_N_FFTS if cqt_weight}

    def _cqt(self, wav: Tensor, n_fft: int) -> Tensor:
        cqt = cqt_magnitude(wav, self.sample_rate, n_fft, n_fft // CQT_HOP_DIVISOR, bins_per_octave=CQT_BINS_PER_OCTAVE)
        return cqt.clamp(min=1e-5)

    def __call__(self, output: Tensor) -> Tensor:
        """The objective of output [B, C, N]: the mean of `per_item`."""
        return self.per_item(output).mean()

    def per_item(self, output: Tensor) -> Tensor:
        """The objective of each of output's B items against its own target, [B]: what one item's search
        descends, whatever else shares its batch."""

        # Reduced over each item's own dims, in place: a reshape would copy the strided spectra and sum them in
        # another order, and one item would no longer give the batch-wide objective to the last digit.
        def mean(x: Tensor) -> Tensor:  # [B, ...] → [B]
            return x.mean(dim=tuple(range(1, x.dim())))

        def norm(x: Tensor) -> Tensor:
            return torch.linalg.vector_norm(x, dim=tuple(range(1, x.dim())))

        error = mean((output - self.target).abs())
        for n_fft, magnitude, log_magnitude in zip(self.n_ffts, self.magnitudes, self.log_magnitudes, strict=True):
            so = stft_magnitude(output, n_fft, n_fft // 4)
            # spectral convergence, item by item (musiclm.dsp.spectral_convergence over one item)
            convergence = norm(magnitude - so) / norm(magnitude).clamp(min=1e-5)
            error = error + mean((torch.log(so + 1e-5) - log_magnitude).abs()) + convergence
        for n_fft, log_cqt in self.log_cqts.items():
            error = error + self.cqt_weight * mean((torch.log(self._cqt(output, n_fft)) - log_cqt).abs())
        return error


def reconstruction_error(
    output: Tensor, target: Tensor, n_ffts: tuple[int, ...] = SEARCH_N_FFTS, cqt_weight: float = SEARCH_CQT_WEIGHT
) -> Tensor:
    """The search's objective, `ReconstructionError(target, n_ffts, cqt_weight)(output)`; output/target
    [B, C, N] at 24 kHz."""
    return ReconstructionError(target, n_ffts, cqt_weight)(output)


@dataclass(frozen=True)
class SearchSettings:
    """One analysis-by-synthesis setting, carried whole from `musiclm.compress.compress` down to `search_codes`,
    so no layer restates a default. `steps` 0: the encoder's own codes (the compressor's default)."""

    steps: int = 0
    lr: float = SEARCH_LR  # Adam's, on the latent
    cqt_weight: float = SEARCH_CQT_WEIGHT  # the objective's constant-Q term (ReconstructionError)
    schedule: str = "constant"  # the learning rate over the steps (SCHEDULES)

    def __post_init__(self):
        if not isinstance(self.steps, int) or self.steps < 0:
            raise MusicLMError(f"search steps must be a whole number >= 0, got {self.steps!r}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise MusicLMError(f"search learning rate must be > 0, got {self.lr!r}")
        if not (math.isfinite(self.cqt_weight) and self.cqt_weight >= 0):
            raise MusicLMError(f"search constant-Q weight must be >= 0, got {self.cqt_weight!r}")
        if self.schedule not in SCHEDULES:
            raise MusicLMError(f"search schedule {self.schedule!r}: one of {SCHEDULES}")

    @property
    def label(self) -> str:
        """How evaluation rows name the setting: "search100lr0.01", + "cqt8" with a constant-Q term, + "cosine"
        with that schedule (rows scored before this class existed read the same); "" without a search."""
        if not self.steps:
            return ""
        cqt = f"cqt{self.cqt_weight:g}" if self.cqt_weight else ""
        return f"search{self.steps}lr{self.lr:g}{cqt}" + ("" if self.schedule == "constant" else self.schedule)


@dataclass
class SearchResult:
    codes: Tensor  # [B, n_q, T], the best seen
    latent: Tensor  # [B, D, T], the continuous latent those codes were quantized from (a target an encoder can learn)
    item_errors_start: list[float]  # each item's objective with the encoder's own codes
    item_errors_best: list[float]  # and with its best codes

    @property
    def error_start(self) -> float:  # the batch's objective (the mean over its items)
        return sum(self.item_errors_start) / len(self.item_errors_start)

    @property
    def error_best(self) -> float:
        return sum(self.item_errors_best) / len(self.item_errors_best)


def search_codes(
    codec,
    wav: Tensor,
    n_q: int,
    search: SearchSettings,
    frame_offset: int = 0,
    on_step: Callable[[], None] | None = None,
) -> Tensor:
    """wav [B, C, N] → codes [B, n_q, T] like `codec.encode`, after `search.steps` Adam steps on the latent
    through the quantizer (straight-through) and the decoder (frozen: only the latent gets gradients). 0 steps
    is `codec.encode`. The codes returned are the best seen, by the objective, the encoder's included.
    `on_step` is called before each step (the compressor checks for Ctrl-C there: a step takes ~0.8 s per
    10 s of audio on one thread)."""
    if search.steps == 0:
        with torch.no_grad():
            return codec.quantizer.encode(codec._encode_latent(wav, frame_offset), n_q)
    return search_latent(codec, wav, n_q, search, frame_offset, on_step).codes


def search_latent(
    codec,
    wav: Tensor,
    n_q: int,
    search: SearchSettings,
    frame_offset: int = 0,
    on_step: Callable[[], None] | None = None,
) -> SearchResult:
    """`search_codes` with the latent of the best codes (a target an encoder can learn: it quantizes to them)
    and the objective of the encoder's codes and of the best (`search.steps` ≥ 1). The objective is
    `ReconstructionError` with `search.cqt_weight`. A batch (a chunk's channels in the compressor, crops in
    train/search_latents.py) is searched item by item: each item descends its own objective (Adam's steps are
    per element) and keeps the codes of its own best step."""
    steps, lr = search.steps, search.lr
    if steps < 1:
        raise MusicLMError(f"search_latent needs steps >= 1, got {steps}")
    with torch.no_grad():
        latent = codec._encode_latent(wav, frame_offset)
    quantizer, n = codec.quantizer, wav.shape[-1]
    objective = ReconstructionError(wav, cqt_weight=search.cqt_weight, sample_rate=codec.sample_rate)

    def quantize(z: Tensor) -> tuple[Tensor, Tensor]:
        codes = quantizer.encode(z.detach(), n_q)
        return codes, quantizer.decode(codes)

    def errors_of(z_hat: Tensor) -> Tensor:  # [B]
        return objective.per_item(codec._decode_latent(z_hat, frame_offset)[..., :n])

    best_errors = torch.full((wav.shape[0],), math.inf, device=wav.device)
    best_codes, best_latent, start_errors = None, latent.clone(), None

    def keep_best(errors: Tensor, codes: Tensor, z: Tensor) -> None:
        nonlocal best_codes
        better = errors.detach() < best_errors
        best_errors[better] = errors.detach()[better]
        best_codes = codes.clone() if best_codes is None else torch.where(better[:, None, None], codes, best_codes)
        best_latent[better] = z.detach()[better]

    with torch.enable_grad():
        z = latent.clone().requires_grad_(True)
        optimizer = torch.optim.Adam([z], lr=lr)
        for step in range(steps):  # the first step hears the encoder's own codes
            if on_step is not None:
                on_step()
            if search.schedule == "cosine":
                optimizer.param_groups[0]["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / steps))
            codes, z_hat = quantize(z)
            errors = errors_of(z + (z_hat - z).detach())  # straight-through: the decoder hears the codes
            if start_errors is None:
                start_errors = errors.detach().clone()
            keep_best(errors, codes, z)
            # The sum: each item's latent gets its own objective's gradient. Only the latent's: the decoder
            # stays frozen.
            (z.grad,) = torch.autograd.grad(errors.sum(), z)
            optimizer.step()
    with torch.no_grad():
        codes, z_hat = quantize(z)
        keep_best(errors_of(z_hat), codes, z)
    return SearchResult(best_codes, best_latent, start_errors.tolist(), best_errors.tolist())
