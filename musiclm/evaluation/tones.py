"""Does a steady tone survive the codec? Level of the decoded tone against the input, pitch by pitch.

Note F1 on music says notes are lost; this says which. A codec that keeps the notes must pass a held tone at
any pitch a melody uses, at about its level: Opus does, trivially. The shipped frame codec (2026-11-29) did
not: steady sines near 400 Hz and from about 1 kHz up came back 40+ dB down (its encoder mapped them to
near-silence), which is where eval/codec_diagnose.py found the notes from C5 up missing.

Off the equal-tempered grid it was worse: a sweep of steady sines showed a comb, in-tune pitches passed and
those between them (a quarter-tone off, as in a detuned recording, a glide or a non-A440 tuning) were lost
from ~250 Hz up (`sweep_levels`). Its frame-local STFT phase turns by a different fast rate in every bin; the
decoder had learned those rotations only for the pitches its training notes used
(`musiclm.codec.framenet.FrameNetConfig.heterodyne`).

Each tone is `seconds` long with a 10 ms fade-in, at `amplitude` peak; the level is the RMS of the middle
(a quarter of the length trimmed from each end, so neither edge counts) in dB relative to the input's. The
band level is the same ratio for the energy within a semitone of the fundamental only: a noise wash at the
right level keeps the level and loses the band (2026-11-30: young frame codecs played off-grid sines as
noise 17-43 dB below the sine's band, at a total level only 4-16 dB down; eval/codec_sine_proxy.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from musiclm.dsp import midi_to_hz

TONE_KINDS = ("sine", "harmonic", "vibrato")
LOST_DB = -6.0  # a tone more than 6 dB down is not "about its level"


@dataclass(frozen=True)
class ToneLevel:
    kind: str
    pitch: float  # MIDI note number (fractional: between the equal-tempered pitches)
    level_db: float  # decoded RMS over input RMS, middle of the tone
    band_db: float = float("nan")  # the same for the energy within a semitone of the fundamental


def make_tone(kind: str, pitch: float, sample_rate: int, seconds: float = 1.5, amplitude: float = 0.1) -> np.ndarray:
    """`sine`: one partial; `harmonic`: 6 partials at 1/k amplitude (a plain instrument); `vibrato`: the
    harmonic tone with 5 Hz vibrato of ±0.5 % (a sung or bowed note). Partials above Nyquist are left out."""
    if kind not in TONE_KINDS:
        raise ValueError(f"unknown tone kind {kind!r}; use one of {TONE_KINDS}")
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    f0 = float(midi_to_hz(pitch))
    depth = 0.005 if kind == "vibrato" else 0.0
    phase = 2 * np.pi * np.cumsum(f0 * (1 + depth * np.sin(2 * np.pi * 5.0 * t))) / sample_rate
    partials = 1 if kind == "sine" else 6
    x = sum(np.sin(k * phase + k) / k for k in range(1, partials + 1) if k * f0 < sample_rate / 2)
    x = x * np.minimum(1.0, t / 0.01)
    return (amplitude * x / np.abs(x).max()).astype(np.float32)


def _middle_rms(x: np.ndarray) -> float:
    q = len(x) // 4
    return float(np.sqrt(np.mean(x[q : len(x) - q] ** 2)) + 1e-12)


def _band_energy(x: np.ndarray, f0: float, sample_rate: int) -> float:
    q = len(x) // 4
    middle = x[q : len(x) - q]
    spectrum = np.abs(np.fft.rfft(middle * np.hanning(len(middle)))) ** 2
    freqs = np.fft.rfftfreq(len(middle), 1 / sample_rate)
    near = np.abs(np.log2(np.maximum(freqs, 1e-3) / f0)) < 1 / 12
    return float(spectrum[near].sum() + 1e-20)


def band_level_db(decoded: np.ndarray, reference: np.ndarray, f0: float, sample_rate: int) -> float:
    """Energy within a semitone of f0 in the middle half of `decoded` against `reference`'s, dB."""
    return float(10 * np.log10(_band_energy(decoded, f0, sample_rate) / _band_energy(reference, f0, sample_rate)))


def tone_levels(
    roundtrip: Callable[[np.ndarray], np.ndarray],
    sample_rate: int,
    pitches: list[float],
    kinds: tuple[str, ...] = TONE_KINDS,
    seconds: float = 1.5,
) -> list[ToneLevel]:
    """Each tone through `roundtrip` (mono float32 [N] → decoded [N']) and its level against the input."""
    out = []
    for kind in kinds:
        for pitch in pitches:
            x = make_tone(kind, pitch, sample_rate, seconds)
            y = roundtrip(x)[: len(x)]
            level = 20 * np.log10(_middle_rms(y) / _middle_rms(x))
            f0 = float(midi_to_hz(pitch))
            out.append(ToneLevel(kind, pitch, level, band_level_db(y, x, f0, sample_rate)))
    return out


def sweep_levels(
    roundtrip: Callable[[np.ndarray], np.ndarray],
    sample_rate: int,
    low_hz: float = 100.0,
    high_hz: float = 4000.0,
    steps_per_semitone: int = 8,
    seconds: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Steady sines from `low_hz` to `high_hz` at `steps_per_semitone` per semitone through `roundtrip`:
    (frequencies [F], levels in dB [F]). A codec that keeps any note, in tune or not, is flat here."""
    count = int(np.floor(12 * steps_per_semitone * np.log2(high_hz / low_hz))) + 1
    freqs = low_hz * 2.0 ** (np.arange(count) / (12 * steps_per_semitone))
    pitches = 69.0 + 12.0 * np.log2(freqs / 440.0)
    levels = tone_levels(roundtrip, sample_rate, list(pitches), ("sine",), seconds)
    return freqs, np.array([lv.level_db for lv in levels])


def codec_roundtrip(codec, n_q: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """codec.encode → codec.decode at `n_q` codebooks (None: all), for a mono codec, on the codec's device."""
    device = next(codec.parameters()).device if isinstance(codec, torch.nn.Module) else torch.device("cpu")

    @torch.no_grad()
    def run(x: np.ndarray) -> np.ndarray:
        wav = torch.from_numpy(x)[None, None].to(device)
        return codec.decode(codec.encode(wav, n_q), wav.shape[-1])[0, 0].float().cpu().numpy()

    return run


def lost_share(levels: list[ToneLevel], threshold_db: float = LOST_DB, band: bool = False) -> float:
    """Share of tones more than `threshold_db` down: in total level, or with `band` in the fundamental's band."""
    if not levels:
        return 0.0
    return float(np.mean([(lv.band_db if band else lv.level_db) < threshold_db for lv in levels]))


# Off the equal-tempered grid by a quarter-tone, every 3 semitones from C2 to A6: where frame codecs lost sines
# that their training notes never used (module docstring). Cheap enough to score at every validation.
OFF_GRID_PITCHES = tuple(36.5 + 3 * i for i in range(20))


def sine_band_lost_share(
    roundtrip: Callable[[np.ndarray], np.ndarray], sample_rate: int, pitches: tuple[float, ...] = OFF_GRID_PITCHES
) -> float:
    """Share of 1 s steady sines at `pitches` whose fundamental's band comes back more than 6 dB down: a band
    that dies with training shows here while note F1 on a few clips still looks level."""
    return lost_share(tone_levels(roundtrip, sample_rate, list(pitches), ("sine",), seconds=1.0), band=True)
