"""Tempo/key/brightness/loudness estimators on signals whose answer is known by construction."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from musiclm.data.analysis import (
    ENVELOPE_RATE,
    analyze,
    brightness,
    estimate_key,
    estimate_tempo,
    key_from_chroma,
    loudness_db,
    tempo_agrees,
    tempo_from_envelope,
)

SR = 16000


def click_track(bpm: float, seconds: float = 12.0, sr: int = SR) -> np.ndarray:
    x = np.zeros(int(seconds * sr))
    t = np.arange(int(0.02 * sr)) / sr
    click = np.sin(2 * np.pi * 1500 * t) * np.exp(-t * 200)
    period = 60.0 / bpm
    for k in range(int(seconds / period)):
        i = int(round(k * period * sr))
        x[i : i + len(click)] += click[: len(x) - i]
    return x


def chord_progression(tonic_midi: int, minor: bool, sr: int = SR) -> np.ndarray:
    """i/I - iv/IV - V - i/I twice, each chord a second of tones with three decaying harmonics."""
    third = 3 if minor else 4
    chords = [(0, third, 7), (5, 5 + third, 12), (7, 11, 14), (0, third, 7)] * 2
    t = np.arange(sr) / sr
    out = []
    for chord in chords:
        wave = sum(
            sum(0.3 / h * np.sin(2 * np.pi * 440 * 2 ** ((tonic_midi + n - 69) / 12) * h * t) for h in (1, 2, 3))
            for n in chord
        )
        out.append(wave * np.exp(-1.5 * t))
    return np.concatenate(out)


@pytest.mark.parametrize("bpm", [60.0, 75.0, 90.0, 110.0, 128.0])
def test_click_track_tempo(bpm):
    est = estimate_tempo(click_track(bpm), SR)
    assert abs(est - bpm) < 0.02 * bpm, est


def test_tempo_from_an_onset_envelope_and_the_octave_rule():
    """The estimator reads an envelope from any source (here: clicks at 90 bpm on the 100 Hz grid), and
    tempo_agrees allows 8 % and octave errors, nothing else (2/3 is another metrical level)."""
    env = np.zeros(1000)
    env[:: round(ENVELOPE_RATE * 60 / 90)] = 1.0
    assert abs(tempo_from_envelope(env) - 90.0) < 1.0
    assert tempo_from_envelope(np.zeros(1000)) == 0.0
    assert tempo_agrees(90.0, 96.0) and tempo_agrees(90.0, 180.0) and tempo_agrees(90.0, 45.5)
    assert not tempo_agrees(90.0, 60.0) and not tempo_agrees(90.0, 135.0) and not tempo_agrees(90.0, 0.0)


def test_tempo_accepts_tensor_and_stereo():
    x = click_track(100.0)
    stereo = torch.from_numpy(np.stack([x, x])).float()  # [2, N]
    assert abs(estimate_tempo(stereo, SR) - estimate_tempo(x, SR)) < 0.5
    assert estimate_tempo(np.zeros(SR * 4), SR) == 0.0


@pytest.mark.parametrize("tonic,name", [(60, "C"), (62, "D"), (63, "Eb"), (66, "F#"), (58, "Bb")])
def test_major_progression_key(tonic, name):
    assert estimate_key(chord_progression(tonic, minor=False), SR)[:2] == (name, "major")


@pytest.mark.parametrize("tonic,name", [(57, "A"), (62, "D"), (61, "C#")])
def test_minor_progression_key(tonic, name):
    tonic_name, mode, confidence = estimate_key(chord_progression(tonic, minor=True), SR)
    assert (tonic_name, mode) == (name, "minor") and confidence > 0


def test_key_from_note_counts_is_transposition_equivariant():
    rng = np.random.default_rng(0)
    chroma = rng.random(12)
    chroma[[0, 4, 7]] += 3.0  # a C major triad dominates
    base = key_from_chroma(chroma)
    assert base[:2] == ("C", "major")
    assert key_from_chroma(np.roll(chroma, 2))[:2] == ("D", "major")
    assert key_from_chroma(np.zeros(12))[2] == 0.0


def test_brightness_and_loudness():
    t = np.arange(SR * 2) / SR
    low, high = np.sin(2 * np.pi * 200 * t), np.sin(2 * np.pi * 3000 * t)
    assert abs(brightness(low, SR) - 200) < 40 and abs(brightness(high, SR) - 3000) < 100
    assert abs(loudness_db(low, SR) - 20 * math.log10(1 / math.sqrt(2))) < 0.1  # full-scale sine: -3 dB
    assert abs(loudness_db(0.1 * low, SR) - loudness_db(low, SR) + 20) < 0.1
    assert loudness_db(np.zeros(SR), SR) == float("-inf")


def test_analyze_fields():
    info = analyze(chord_progression(62, minor=False) + 0.5 * np.resize(click_track(120.0, 8.0), 8 * SR), SR)
    assert not info["silent"] and info["key"] == "D" and info["mode"] == "major"
    assert info["tempo_word"] and info["density"] in ("sparse", "moderate", "dense")
    assert analyze(np.zeros(SR * 3), SR)["silent"]
