"""Music analysis: tempo, key/mode, brightness, loudness (numpy, with spectra from `musiclm.dsp`).

Used to caption the user's untagged files and, by evaluation, to check that generated audio follows its
prompt (control adherence). Key: Krumhansl-Schmuckler — correlate a 12-bin chroma with the Krumhansl-Kessler
major/minor probe-tone profiles rotated to each tonic (Krumhansl 1990, "Cognitive Foundations of Musical
Pitch", ch. 4).
"""

from __future__ import annotations

import numpy as np
import torch

from musiclm import dsp
from musiclm.data.captions import key_name

# Krumhansl-Kessler probe-tone profiles, tonic first.
KK_MAJOR = np.array([6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88])
KK_MINOR = np.array([6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17])


def _with_harmonics(profile: np.ndarray, decay: float = 0.8, n: int = 6) -> np.ndarray:
    """What `profile` looks like in an audio chroma: each note also sounds its harmonics 2..n (octave, fifth,
    major third, ...) with amplitude decay**(h-1). Without this the 3rd harmonic pulls estimates a fifth up
    (Gómez 2006, "Tonal description of music audio signals", §4.2: harmonic-aware key templates)."""
    spread = np.zeros(12)
    for h in range(1, n + 1):
        spread[int(round(12 * np.log2(h))) % 12] += decay ** (h - 1)
    return np.array([sum(profile[p] * spread[(q - p) % 12] for p in range(12)) for q in range(12)])


# decay 0.8 was chosen on the train split of the synthesized corpus (exact-key agreement 0.49 → 0.67);
# eval/check_captions.py reports the valid split.
AUDIO_MAJOR, AUDIO_MINOR = _with_harmonics(KK_MAJOR), _with_harmonics(KK_MINOR)


def key_from_chroma(chroma: np.ndarray, audio: bool = False) -> tuple[str, str, float]:
    """12-bin pitch-class weights (C first) → (tonic, mode, confidence = best correlation - runner-up).

    `audio=True` uses profiles that expect harmonics (a chroma measured from sound); False suits a chroma
    counted from notes (a score)."""
    chroma = np.asarray(chroma, dtype=np.float64)
    if chroma.sum() <= 0:
        return "C", "major", 0.0
    scores = []
    profiles = (("major", AUDIO_MAJOR), ("minor", AUDIO_MINOR)) if audio else (("major", KK_MAJOR), ("minor", KK_MINOR))
    for mode, profile in profiles:
        for tonic in range(12):
            r = np.corrcoef(chroma, np.roll(profile, tonic))[0, 1]
            scores.append((0.0 if np.isnan(r) else float(r), tonic, mode))
    scores.sort(reverse=True)
    best, second = scores[0], scores[1]
    return key_name(best[1], best[2]), best[2], round(best[0] - second[0], 4)


# ---------------------------------------------------------------- helpers


def to_mono(wav) -> np.ndarray:
    """[N] or [C, N] numpy array or torch tensor → float64 [N]."""
    if hasattr(wav, "detach"):
        wav = wav.detach().cpu().numpy()
    x = np.asarray(wav, dtype=np.float64)
    if x.ndim == 2:
        x = x.mean(0)
    if x.ndim != 1:
        raise ValueError(f"expected audio shaped [N] or [C, N], got {list(x.shape)}")
    return x


def _stft_mag(x: np.ndarray, n_fft: int, hop: int) -> np.ndarray:
    """x [N] → magnitude spectrogram [frames, n_fft // 2 + 1] as float64 (`dsp.stft`, frames centred by
    zero padding)."""
    mag = dsp.stft(torch.from_numpy(x), n_fft, hop, pad_mode="constant").abs()[0]  # [F, frames]
    return mag.T.double().numpy()


# ---------------------------------------------------------------- tempo


ENVELOPE_RATE = 100.0  # onset-envelope frames per second


def onset_envelope(wav, sr: int) -> np.ndarray:
    """Spectral flux of the log-magnitude spectrogram (positive changes summed over frequency), [F] at
    ~100 Hz: peaks where notes start."""
    x = to_mono(wav)
    hop = max(1, int(round(sr / ENVELOPE_RATE)))
    n_fft = 1 << int(np.ceil(np.log2(sr * 0.046)))  # >= 46 ms (1024 points at 22.05 kHz, 2048 at 24 kHz)
    flux = dsp.spectral_flux(torch.from_numpy(x), n_fft, hop)[0].double().numpy()
    flux = flux - np.convolve(flux, np.ones(31) / 31, mode="same")  # remove slow trends (crescendi)
    return np.maximum(flux, 0.0)


def estimate_tempo(wav, sr: int, min_bpm: float = 40.0, max_bpm: float = 240.0, prior_bpm: float = 90.0) -> float:
    """Beats per minute of audio: `tempo_from_envelope` of its `onset_envelope`. 0.0 for silence."""
    return tempo_from_envelope(onset_envelope(wav, sr), min_bpm, max_bpm, prior_bpm)


def tempo_from_envelope(
    env: np.ndarray, min_bpm: float = 40.0, max_bpm: float = 240.0, prior_bpm: float = 90.0
) -> float:
    """Beats per minute from the autocorrelation of an onset envelope at ENVELOPE_RATE, weighted by a
    log-normal prior (centre `prior_bpm`, one octave wide) that resolves the octave ambiguity towards common
    tempi — the approach of Ellis 2007 ("Beat tracking by dynamic programming", §3.1). 0.0 for silence.
    The envelope may come from audio (`onset_envelope`) or from notes (`musiclm.notes.midi.onset_strength`).

    The prior's centre, 90, was chosen on the synthesized corpus's train split, whose captions count beats
    of the meter (half notes in 4/2, dotted quarters in 6/8): 120 (Ellis's) gave 53% within 4%, 90 gives 83%.
    """
    env = np.asarray(env, dtype=np.float64)
    if len(env) < 4 or env.max() <= 0:
        return 0.0
    # ~30 ms of smoothing: a beat period between two integer lags must still meet its clicks
    env = np.convolve(env, np.hanning(5) / np.hanning(5).sum(), mode="same")
    env = env - env.mean()
    n = len(env)
    spec = np.fft.rfft(env, 2 * n)
    ac = np.fft.irfft(spec * np.conj(spec))[:n]
    ac = ac / (ac[0] + 1e-12)
    lo = int(np.floor(60.0 * ENVELOPE_RATE / max_bpm))
    hi = min(n - 2, int(np.ceil(60.0 * ENVELOPE_RATE / min_bpm)))
    if hi <= lo + 1:
        return 0.0
    lags = np.arange(lo, hi + 1)
    bpms = 60.0 * ENVELOPE_RATE / lags
    # A beat period also shows at twice its lag; rewarding that steadies the choice between neighbours.
    score = ac[lags] + 0.5 * ac[np.minimum(2 * lags, n - 1)]
    weight = np.exp(-0.5 * (np.log2(bpms / prior_bpm)) ** 2)
    k = int(np.argmax(np.maximum(score, 0) * weight))
    lag = float(lags[k])
    if 0 < k < len(lags) - 1:  # parabolic interpolation of the peak for sub-frame precision
        a, b, c = score[k - 1], score[k], score[k + 1]
        denom = a - 2 * b + c
        if denom < 0:
            lag += 0.5 * (a - c) / denom
    return float(60.0 * ENVELOPE_RATE / lag)


def tempo_agrees(asked: float, heard: float, tolerance: float = 0.08) -> bool:
    """`heard` is `asked` within `tolerance` (8 %), octave errors (x2, x1/2) allowed: how issue 12 scores a
    tempo asked in the prompt against the one estimated from the music."""
    return any(abs(heard * f - asked) <= tolerance * asked for f in (0.5, 1.0, 2.0)) if heard > 0 else False


# ---------------------------------------------------------------- key, brightness, loudness


def chroma(wav, sr: int, fmin: float = 55.0, fmax: float = 2000.0) -> np.ndarray:
    """12-bin pitch-class energy (C first) from a long-window spectrogram. Only spectral peaks count (local
    maxima within 50 dB of the frame's loudest), so window side lobes summed over thousands of bins do not
    flatten the profile; each peak adds sqrt(magnitude) (loud bass notes do not dominate) to its nearest
    pitch class, weighted by how close it lies to that semitone."""
    x = to_mono(wav)
    n_fft = 1 << int(np.ceil(np.log2(sr * 0.37)))  # ~0.37 s: 2.7 Hz bins at 24 kHz resolve low semitones
    mag = _stft_mag(x, n_fft, n_fft // 2)  # [F, bins]
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sr)
    sel = np.nonzero((freqs >= fmin) & (freqs <= fmax))[0]
    m = mag[:, sel]
    left, right = mag[:, sel - 1], mag[:, np.minimum(sel + 1, mag.shape[1] - 1)]
    floor = mag.max(1, keepdims=True) * 10 ** (-50 / 20)
    peaks = (m > left) & (m >= right) & (m > floor)
    midi = 69 + 12 * np.log2(freqs[sel] / 440.0)
    nearest = np.round(midi)
    closeness = np.cos(np.pi * (midi - nearest)) ** 2  # 1 on a semitone, 0 halfway between
    energy = (np.sqrt(m) * peaks).sum(0) * closeness
    out = np.zeros(12)
    np.add.at(out, nearest.astype(int) % 12, energy)
    return out


def estimate_key(wav, sr: int) -> tuple[str, str, float]:
    """(tonic like "D" or "Eb", "major"|"minor", confidence) by Krumhansl-Schmuckler on the chroma."""
    return key_from_chroma(chroma(wav, sr), audio=True)


def brightness(wav, sr: int) -> float:
    """Spectral centroid in Hz, averaged over frames weighted by their energy."""
    x = to_mono(wav)
    mag = _stft_mag(x, 2048, 512)
    freqs = np.fft.rfftfreq(2048, 1.0 / sr)
    power = mag**2
    total = power.sum(1)
    if total.sum() <= 0:
        return 0.0
    centroid = (power * freqs).sum(1) / (total + 1e-12)
    return float((centroid * total).sum() / total.sum())


def loudness_db(wav, sr: int, block: float = 0.4, gate_db: float = -70.0) -> float:
    """RMS level in dBFS over 400 ms blocks above an absolute -70 dB gate (the gating of ITU-R BS.1770,
    without its K-weighting). -inf for silence."""
    x = to_mono(wav)
    n = max(1, int(block * sr))
    blocks = x[: len(x) // n * n].reshape(-1, n) if len(x) >= n else x[None]
    ms = (blocks**2).mean(1)
    db = 10 * np.log10(ms + 1e-20)
    keep = db > gate_db
    if not keep.any():
        return float("-inf")
    return float(10 * np.log10(ms[keep].mean()))


def analyze(wav, sr: int) -> dict:
    """Everything a caption can say from the audio alone (see catalog.py)."""
    from musiclm.data.captions import density_word, tempo_word

    x = to_mono(wav)
    level = loudness_db(x, sr)
    out = {
        "duration": len(x) / sr,
        "loudness_db": round(level, 2) if np.isfinite(level) else level,
        "silent": not np.isfinite(level) or level < -60.0,
    }
    if out["silent"]:
        return out
    bpm = estimate_tempo(x, sr)
    tonic, mode, conf = estimate_key(x, sr)
    env = onset_envelope(x, sr)
    # onsets: envelope peaks above a fraction of its high percentile, at least 50 ms apart
    thr = 0.3 * np.percentile(env, 99) if env.size else 0.0
    peaks = [i for i in range(1, len(env) - 1) if env[i] > thr and env[i] >= env[i - 1] and env[i] > env[i + 1]]
    onsets = [p for j, p in enumerate(peaks) if j == 0 or p - peaks[j - 1] >= 5]
    rate = len(onsets) / max(out["duration"], 1e-9)
    centroid = brightness(x, sr)
    out.update(
        {
            "bpm": round(bpm, 1),
            "tempo_word": tempo_word(bpm) if bpm > 0 else "",
            "key": tonic,
            "mode": mode,
            "key_confidence": conf,
            "brightness_hz": round(centroid, 1),
            "brightness": "dark" if centroid < 1000 else "bright" if centroid > 2500 else "warm",
            "onset_rate": round(rate, 2),
            "density": density_word(rate),
            "dynamics": "soft" if level < -30 else "loud" if level > -18 else "moderate",
        }
    )
    return out
