"""Synthetic melodies mixed into codec training crops: held notes over the whole range a melody uses.

Why: the training music (chorales rendered from MIDI, recorded game music) has few held notes above C5, and a
codec trained on it lost every held tone from about G#5 up, sine or harmonic (eval/codec_tones.py: 100 % of
the C6 and C7 octaves > 6 dB down), which is where note F1 lost the high notes (eval/codec_diagnose.py). A
share of crops (`data.tone_melody_share`) gets a line of notes added: random pitches C3-E7, durations 0.08-0.6
s, 1-8 partials with a random spectral slope, sometimes vibrato, at -12 to +6 dB against the crop (or alone).
Drawn from the crop's generator, so a resumed run sees the same batches.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from musiclm.dsp import midi_to_hz

LOW_PITCH, HIGH_PITCH = 48, 100  # C3 .. E7
ALONE_SHARE = 0.25  # of the augmented crops: the melody over silence, as a solo instrument or a test tone


def melody(rng: np.random.Generator, length: int, sample_rate: int) -> np.ndarray:
    """A mono line of notes, float32 [length], peak 1 (before the caller's gain)."""
    out = np.zeros(length, dtype=np.float64)
    pos = 0
    while pos < length:
        dur = int(rng.uniform(0.08, 0.6) * sample_rate)
        rest = int(rng.uniform(0.0, 0.08) * sample_rate) if rng.random() < 0.3 else 0
        n = min(dur, length - pos)
        out[pos : pos + n] = _note(rng, n, dur, sample_rate)
        pos += dur + rest
    peak = np.abs(out).max()
    return (out / peak if peak > 0 else out).astype(np.float32)


def _note(rng: np.random.Generator, n: int, dur: int, sample_rate: int) -> np.ndarray:
    t = np.arange(n) / sample_rate
    f0 = float(midi_to_hz(rng.uniform(LOW_PITCH, HIGH_PITCH)))
    depth = rng.uniform(0.002, 0.01) if rng.random() < 0.3 else 0.0
    phase = 2 * np.pi * np.cumsum(f0 * (1 + depth * np.sin(2 * np.pi * rng.uniform(4, 7) * t))) / sample_rate
    partials = int(rng.integers(1, 9))
    slope = rng.uniform(0.5, 2.0)  # partial k at 1/k^slope
    x = sum(
        np.sin(k * phase + rng.uniform(0, 2 * np.pi)) / k**slope
        for k in range(1, partials + 1)
        if k * f0 < sample_rate / 2
    )
    attack = int(rng.uniform(0.002, 0.03) * sample_rate)
    release = int(min(0.05, dur / sample_rate / 3) * sample_rate)
    env = np.ones(n)
    env[: min(attack, n)] = np.linspace(0, 1, min(attack, n))
    if dur <= n and release > 0:
        env[-release:] *= np.linspace(1, 0, release)
    env *= np.exp(-t * rng.uniform(0.0, 3.0))  # held (organ, flute) to decaying (plucked)
    return x * env


def add_melody(wav: Tensor, rng: np.random.Generator, sample_rate: int) -> Tensor:
    """wav [C, N] → the crop with a melody mixed in (or replaced by it, ALONE_SHARE of the time), peak ≤ 0.99."""
    line = torch.from_numpy(melody(rng, wav.shape[-1], sample_rate))
    rms = float(wav.pow(2).mean().sqrt())
    if rng.random() < ALONE_SHARE or rms < 1e-4:
        mixed = line[None].expand_as(wav) * float(10 ** (rng.uniform(-30, -3) / 20))
    else:
        line_rms = float(line.pow(2).mean().sqrt()) + 1e-9
        mixed = wav + line[None] * (rms / line_rms * float(10 ** (rng.uniform(-12, 6) / 20)))
    peak = float(mixed.abs().max())
    return mixed * (0.99 / peak) if peak > 0.99 else mixed
