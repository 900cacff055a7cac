"""Clip embeddings for the Fréchet distance and diversity — computable offline, no downloaded weights.

The usual FAD embeds clips with VGGish or CLAP, whose weights cannot be downloaded here. Two substitutes:

* `feature_embedding` (default, "features"): 166 hand-made statistics of a clip at 16 kHz mono —
  log-mel spectrum (64 bands, mean and std over time: timbre and loudness contour), chroma (12 pitch
  classes, mean and std: harmony), onset strength (mean, std, and its autocorrelation at 8 tempi from
  60 to 180 BPM: rhythm), spectral centroid and RMS level (mean and std).
* `CodecEmbedding` ("codec"): mean and std over time of our own codec's encoder latents [D] → [2D].

Limits, stated in the report too: neither embedding was trained to match human judgements, so the FD
ranks systems only along what the features see (spectral balance, harmony, rhythm regularity). Numbers
are not comparable with published FAD values, nor between the two embeddings; the codec embedding
favours whatever the codec reproduces well and changes whenever the codec is retrained.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
import torch
from torch import Tensor

from musiclm.audio import convert_channels, resample

EMBED_SR = 16000
N_FFT = 1024
HOP = 256
N_MELS = 64
TEMPI_BPM = (60, 75, 90, 105, 120, 140, 160, 180)
FEATURE_DIM = 2 * N_MELS + 24 + 2 + len(TEMPI_BPM) + 4


def _hz_to_mel(f: np.ndarray) -> np.ndarray:
    return 2595.0 * np.log10(1.0 + f / 700.0)


@lru_cache(maxsize=4)
def mel_filterbank(
    sr: int = EMBED_SR, n_fft: int = N_FFT, n_mels: int = N_MELS, fmin: float = 30.0, fmax: float | None = None
) -> np.ndarray:
    """Triangular HTK-mel filters [n_mels, n_fft // 2 + 1], each normalized to unit area."""
    fmax = fmax or sr / 2
    freqs = np.linspace(0, sr / 2, n_fft // 2 + 1)
    edges_mel = np.linspace(_hz_to_mel(np.array(fmin)), _hz_to_mel(np.array(fmax)), n_mels + 2)
    edges = 700.0 * (10 ** (edges_mel / 2595.0) - 1.0)
    fb = np.zeros((n_mels, freqs.size))
    for m in range(n_mels):
        lo, mid, hi = edges[m], edges[m + 1], edges[m + 2]
        up = (freqs - lo) / max(mid - lo, 1e-9)
        down = (hi - freqs) / max(hi - mid, 1e-9)
        fb[m] = np.clip(np.minimum(up, down), 0, None)
        fb[m] /= max(fb[m].sum(), 1e-9)
    return fb


def _mono16k(wav: Tensor, sr: int) -> np.ndarray:
    """[C, N] or [N] at sr → float64 [N'] mono at 16 kHz, at least one FFT window long."""
    wav = wav.detach().float().cpu()
    if wav.dim() == 1:
        wav = wav[None]
    x = resample(convert_channels(wav, 1), sr, EMBED_SR)[0].numpy().astype(np.float64)
    if x.size < N_FFT:
        x = np.pad(x, (0, N_FFT - x.size))
    return x


def power_spectrogram(x: np.ndarray) -> np.ndarray:
    """x [N] → |STFT|^2 [F, T] (Hann window, N_FFT, HOP, centered)."""
    spec = torch.stft(
        torch.from_numpy(x),
        N_FFT,
        HOP,
        window=torch.hann_window(N_FFT, dtype=torch.float64),
        center=True,
        return_complex=True,
    )
    return spec.abs().pow(2).numpy()


def _chroma(power: np.ndarray) -> np.ndarray:
    """power [F, T] → per-frame pitch-class distribution [12, T] from bins between 55 Hz and 4 kHz."""
    freqs = np.linspace(0, EMBED_SR / 2, power.shape[0])
    keep = (freqs >= 55) & (freqs <= 4000)
    pc = np.round(12 * np.log2(freqs[keep] / 440.0) + 69).astype(int) % 12  # MIDI pitch class, C = 0
    chroma = np.zeros((12, power.shape[1]))
    np.add.at(chroma, pc, power[keep])
    return chroma / (chroma.sum(0, keepdims=True) + 1e-12)


def onset_envelope(log_mel: np.ndarray) -> np.ndarray:
    """Spectral flux: summed positive log-mel increase per frame [T]."""
    flux = np.clip(np.diff(log_mel, axis=1), 0, None).sum(0)
    return np.concatenate([[0.0], flux])


def _tempo_profile(env: np.ndarray) -> np.ndarray:
    """Normalized autocorrelation of the onset envelope at the lags of TEMPI_BPM (best within ±4%)."""
    env = env - env.mean()
    denom = float(env @ env) + 1e-12
    frame_rate = EMBED_SR / HOP
    out = []
    for bpm in TEMPI_BPM:
        best = 0.0
        for lag in {int(round(frame_rate * 60.0 / (bpm * s))) for s in (0.96, 1.0, 1.04)}:
            if 0 < lag < env.size:
                best = max(best, float(env[:-lag] @ env[lag:]) / denom)
        out.append(best)
    return np.array(out)


def feature_embedding(wav: Tensor, sr: int) -> np.ndarray:
    """One clip wav [C, N] at `sr` → hand-made feature vector [FEATURE_DIM] (see the module docstring)."""
    x = _mono16k(wav, sr)
    power = power_spectrogram(x)  # [F, T]
    # the one large matrix product, in torch: it keeps to torch.set_num_threads (OpenBLAS threads thrash)
    mel = torch.from_numpy(mel_filterbank()) @ torch.from_numpy(power)
    log_mel = np.log(mel.numpy() + 1e-8)  # [N_MELS, T]
    chroma = _chroma(power)
    env = onset_envelope(log_mel)
    freqs = np.linspace(0, EMBED_SR / 2, power.shape[0])[:, None]
    centroid_khz = (freqs * power).sum(0) / (power.sum(0) + 1e-12) / 1000.0
    rms_db = 10 * np.log10(power.mean(0) + 1e-10) / 10.0  # in bels, to keep units near 1
    parts = [
        log_mel.mean(1),
        log_mel.std(1),
        chroma.mean(1),
        chroma.std(1),
        [math.log1p(env.mean()), math.log1p(env.std())],
        _tempo_profile(env),
        [centroid_khz.mean(), centroid_khz.std(), rms_db.mean(), rms_db.std()],
    ]
    out = np.concatenate([np.asarray(p, dtype=np.float64).ravel() for p in parts])
    assert out.shape == (FEATURE_DIM,), f"feature width {out.shape} != {FEATURE_DIM}"
    return out


class CodecEmbedding:
    """Mean and std over time of a codec's encoder latents: wav [C, N] → [2 D]."""

    def __init__(self, codec):
        self.codec = codec.eval()

    @torch.no_grad()
    def __call__(self, wav: Tensor, sr: int) -> np.ndarray:
        wav = resample(convert_channels(wav.detach().float().cpu(), self.codec.channels), sr, self.codec.sample_rate)
        latent = self.codec.encoder(wav[None])[0]  # [D, T]
        return torch.cat([latent.mean(-1), latent.std(-1, unbiased=False)]).double().numpy()


def embed_clips(clips: list[tuple[Tensor, int]], embed=feature_embedding) -> np.ndarray:
    """[(wav [C, N], sr), ...] → embeddings [n, D]."""
    return np.stack([embed(wav, sr) for wav, sr in clips])
