"""The one signal-processing layer: STFT, mel, constant-Q (log-frequency) spectra and chroma, in torch.

Training losses (`musiclm.training.losses`), evaluation metrics (`musiclm.evaluation.metrics`) and the music
analysis that captions audio (`musiclm.data.analysis`) all call these, so a loss and the metric that judges
it see the same spectrum.

    wav [B, C, N] --stft--> complex [B*C, F, T] --|.|--> magnitude --mel_filterbank--> [B*C, n_mels, T]
                                                                   --cqt_filterbank--> [B*C, n_bins, T]
                                                                   --fold octaves-->  chroma [B*C, 12, T]

K-weighting (ITU-R BS.1770's loudness filter) lives here too, for the compressor's level corrections.

The constant-Q spectrum here is a "pseudo-CQT": semitone-spaced triangular bands summed from ONE long-window
STFT. A 2048-point window at 24 kHz has 11.7 Hz bins while a semitone near C2 is ~4 Hz, so low notes need
windows of 4096-8192 points (FlowDec, ICLR 2025, adds a multi-scale CQT loss for exactly these low-frequency
failures of discriminator-free training). One long STFT + a fixed matrix is far cheaper than a true
multi-rate CQT and has the same frequency resolution where it matters (below ~1 kHz).
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch
from torch import Tensor

A4_HZ = 440.0
C1_HZ = 32.703  # MIDI note 24


def stft(wav: Tensor, n_fft: int, hop: int, center: bool = True, pad_mode: str | None = None) -> Tensor:
    """wav [B, C, N] (or [B, N], [N]) → complex STFT [B*C, n_fft // 2 + 1, frames], periodic Hann window,
    float32. `center` pads n_fft // 2 on each side: by reflection (`pad_mode` None, zeros when N <= n_fft / 2,
    where reflection is impossible) or as `pad_mode` says ("constant": zeros)."""
    x = wav.reshape(-1, wav.shape[-1]).float()
    if pad_mode is None:
        pad_mode = "reflect" if x.shape[-1] > n_fft // 2 else "constant"
    window = _hann(n_fft, x.device)
    return torch.stft(x, n_fft, hop, n_fft, window, center=center, pad_mode=pad_mode, return_complex=True)


def stft_magnitude(wav: Tensor, n_fft: int, hop: int) -> Tensor:
    """wav [B, C, N] → |STFT| [B*C, n_fft // 2 + 1, frames]."""
    return stft(wav, n_fft, hop).abs()


def peak_compressed_magnitude(
    wav: Tensor, n_fft: int, hop: int, gain: float = 1000.0, pad_mode: str | None = None
) -> Tensor:
    """log1p(gain · |STFT| / peak) [B*C, F, frames], peak each signal's own largest magnitude, so a gain does not
    change it: what the onset envelope and the codec's delta loss compare."""
    mag = stft(wav, n_fft, hop, pad_mode=pad_mode).abs()
    return torch.log1p(gain * mag / mag.amax(dim=(1, 2), keepdim=True).clamp(min=1e-12))


def spectral_flux(wav: Tensor, n_fft: int, hop: int, gain: float = 1000.0, pad_mode: str = "constant") -> Tensor:
    """Onset strength: the positive frame-to-frame change of the log-compressed magnitude spectrum, summed
    over frequency (Bello et al. 2005, "A tutorial on onset detection in music signals", §3.1.1). wav [B, C, N]
    → [B*C, frames - 1], differentiable. Magnitudes as `peak_compressed_magnitude`. Peaks where notes start;
    the tempo estimator, the onset metric and the codec's onset loss read it."""
    compressed = peak_compressed_magnitude(wav, n_fft, hop, gain, pad_mode)
    return torch.relu(compressed.diff(dim=-1)).sum(dim=1)


@functools.lru_cache(maxsize=8)
def _hann_cpu(n_fft: int) -> Tensor:
    return torch.hann_window(n_fft)


def _hann(n_fft: int, device: torch.device) -> Tensor:
    window = _hann_cpu(n_fft)
    return window if window.device == device else window.to(device)


def lowpass(wav: Tensor, sample_rate: int, cutoff_hz: float, transition: float = 0.25) -> Tensor:
    """wav [..., N] low-passed by an FFT mask over the whole signal: 1 below cutoff_hz, a raised-cosine fall to
    0 over `transition` (a fraction of the cutoff) above it. Zero-phase, so waveforms stay comparable."""
    n = wav.shape[-1]
    freqs = torch.fft.rfftfreq(n, 1.0 / sample_rate, device=wav.device)
    edge = cutoff_hz * (1.0 + transition)
    ramp = ((freqs - cutoff_hz) / (edge - cutoff_hz)).clamp(0.0, 1.0)
    mask = 0.5 * (1.0 + torch.cos(math.pi * ramp))
    return torch.fft.irfft(torch.fft.rfft(wav.float()) * mask, n)


def midi_to_hz(note: float | np.ndarray) -> float | np.ndarray:
    return A4_HZ * 2.0 ** ((np.asarray(note, dtype=np.float64) - 69.0) / 12.0)


def hz_to_mel(f: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """Hz → mel. "slaney": linear below 1 kHz, logarithmic above (Slaney's Auditory Toolbox, librosa's
    default); "htk": 2595 · log10(1 + f / 700) (O'Shaughnessy 1987, the HTK book)."""
    f = np.asarray(f, dtype=np.float64)
    if scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if scale != "slaney":
        raise ValueError(f"mel scale must be 'slaney' or 'htk', got {scale!r}")
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    log_part = min_log_hz / f_sp + np.log(np.maximum(f, 1e-9) / min_log_hz) / logstep
    return np.where(f >= min_log_hz, log_part, f / f_sp)


def mel_to_hz(m: np.ndarray | float, scale: str = "slaney") -> np.ndarray:
    """The inverse of `hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if scale != "slaney":
        raise ValueError(f"mel scale must be 'slaney' or 'htk', got {scale!r}")
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, np.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp
    return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)


@functools.lru_cache(maxsize=16)
def mel_filterbank(
    sample_rate: int,
    n_fft: int,
    n_mels: int,
    f_min: float = 0.0,
    f_max: float | None = None,
    scale: str = "slaney",
    norm: str = "area",
) -> Tensor:
    """Triangular filters [n_mels, n_fft // 2 + 1] with edges evenly spaced on the `scale` mel scale
    ("slaney" or "htk", see `hz_to_mel`). norm "area": each filter has unit area in Hz (2 / its width, as
    Slaney and librosa's norm="slaney"), so wide bands do not outweigh narrow ones; "sum": each filter's
    weights sum to 1 over the FFT bins. The cached tensor is shared: do not modify it in place."""
    if norm not in ("area", "sum"):
        raise ValueError(f"mel filterbank norm must be 'area' or 'sum', got {norm!r}")
    f_max = f_max or sample_rate / 2
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(f_min, scale), hz_to_mel(f_max, scale), n_mels + 2), scale)
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1, None] - edges[:-2, None])
    upper = (edges[2:, None] - freqs[None]) / (edges[2:, None] - edges[1:-1, None])
    fb = np.maximum(0.0, np.minimum(lower, upper))
    if norm == "area":
        fb *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    else:
        fb /= np.maximum(fb.sum(axis=1, keepdims=True), 1e-9)
    return torch.from_numpy(fb.astype(np.float32))


@functools.lru_cache(maxsize=16)
def cqt_filterbank(
    sample_rate: int, n_fft: int, f_min: float = C1_HZ, bins_per_octave: int = 24, n_bins: int | None = None
) -> Tensor:
    """Triangular log-frequency bands [n_bins, n_fft // 2 + 1]: band k centred at f_min · 2^(k / bins_per_octave),
    reaching to its neighbours' centres. A band narrower than one FFT bin still takes that bin's share (linear
    interpolation of the centre), so no band is empty; each band is normalised to unit sum."""
    nyquist = sample_rate / 2
    if n_bins is None:
        n_bins = int(np.floor(bins_per_octave * np.log2(nyquist * 0.95 / f_min)))
    k = np.arange(-1, n_bins + 1, dtype=np.float64)
    centres = f_min * 2.0 ** (k / bins_per_octave)  # [n_bins + 2] including both outer edges
    freqs = np.linspace(0, nyquist, n_fft // 2 + 1)
    lower = (freqs[None] - centres[:-2, None]) / (centres[1:-1, None] - centres[:-2, None])
    upper = (centres[2:, None] - freqs[None]) / (centres[2:, None] - centres[1:-1, None])
    fb = np.maximum(0.0, np.minimum(lower, upper))
    # Bands narrower than the bin spacing can fall between bins: give them the interpolated centre instead.
    bin_hz = freqs[1]
    for i, f in enumerate(centres[1:-1]):
        if fb[i].sum() <= 1e-9:
            j = f / bin_hz
            lo = int(np.floor(j))
            fb[i, lo] = 1.0 - (j - lo)
            if lo + 1 < fb.shape[1]:
                fb[i, lo + 1] = j - lo
    fb /= fb.sum(axis=1, keepdims=True)
    return torch.from_numpy(fb.astype(np.float32))


def cqt_magnitude(
    wav: Tensor,
    sample_rate: int,
    n_fft: int = 8192,
    hop: int = 512,
    f_min: float = C1_HZ,
    bins_per_octave: int = 24,
) -> Tensor:
    """wav [B, C, N] → pseudo-CQT magnitude [B*C, n_bins, frames] (see the module docstring)."""
    mag = stft_magnitude(wav, n_fft, hop)
    fb = cqt_filterbank(sample_rate, n_fft, f_min, bins_per_octave).to(mag.device)
    return torch.matmul(fb, mag)


@functools.lru_cache(maxsize=8)
def chroma_filterbank(sample_rate: int, n_fft: int, f_min: float = C1_HZ, f_max: float = 5000.0) -> Tensor:
    """[12, n_fft // 2 + 1]: each FFT bin between f_min and f_max shares its energy between the two pitch
    classes nearest its frequency (linear in cents); row 0 is C."""
    freqs = np.linspace(0, sample_rate / 2, n_fft // 2 + 1)
    fb = np.zeros((12, freqs.size))
    valid = (freqs >= f_min) & (freqs <= f_max)
    midi = 69.0 + 12.0 * np.log2(freqs[valid] / A4_HZ)
    lo = np.floor(midi)
    frac = midi - lo
    cols = np.nonzero(valid)[0]
    fb[(lo.astype(int)) % 12, cols] += 1.0 - frac
    fb[(lo.astype(int) + 1) % 12, cols] += frac
    return torch.from_numpy(fb.astype(np.float32))


def chroma(wav: Tensor, sample_rate: int, n_fft: int = 8192, hop: int = 2048) -> Tensor:
    """wav [B, C, N] → chroma energy [B*C, 12, frames] (power folded into pitch classes, C first; not
    normalised, so silent frames stay near zero and callers can tell them apart)."""
    power = stft_magnitude(wav, n_fft, hop).pow(2)
    fb = chroma_filterbank(sample_rate, n_fft).to(power.device)
    return torch.matmul(fb, power)


def k_weighting(sample_rate: int) -> np.ndarray:
    """BS.1770-4's K-weighting as second-order sections [2, 6] at any rate: the standard's 48 kHz filters
    are a high shelf (+4 dB, 1500 Hz, Q 1/√2) and a high-pass (38 Hz, Q 0.5), redrawn with the RBJ Audio
    EQ Cookbook formulas (as pyloudnorm does)."""
    w = 2 * math.pi * 1500.0 / sample_rate
    a, alpha = 10 ** (4.0 / 40), math.sin(w) / (2 / math.sqrt(2))
    shelf = [
        a * ((a + 1) + (a - 1) * math.cos(w) + 2 * math.sqrt(a) * alpha),
        -2 * a * ((a - 1) + (a + 1) * math.cos(w)),
        a * ((a + 1) + (a - 1) * math.cos(w) - 2 * math.sqrt(a) * alpha),
        (a + 1) - (a - 1) * math.cos(w) + 2 * math.sqrt(a) * alpha,
        2 * ((a - 1) - (a + 1) * math.cos(w)),
        (a + 1) - (a - 1) * math.cos(w) - 2 * math.sqrt(a) * alpha,
    ]
    w = 2 * math.pi * 38.0 / sample_rate
    alpha = math.sin(w) / (2 * 0.5)
    c = math.cos(w)
    high_pass = [(1 + c) / 2, -(1 + c), (1 + c) / 2, 1 + alpha, -2 * c, 1 - alpha]
    sos = np.array([shelf, high_pass])
    return np.concatenate([sos[:, :3] / sos[:, 3:4], sos[:, 3:] / sos[:, 3:4]], axis=1)


def spectral_convergence(sx: Tensor, sy: Tensor, floor: float = 1e-5) -> Tensor:
    """||sx − sy||_F / ||sy||_F for magnitudes sx (output) and sy (target)."""
    return torch.linalg.norm(sy - sx) / torch.linalg.norm(sy).clamp(min=floor)
