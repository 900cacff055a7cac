"""Per-frame note features for the token LM, at the codec's frame rate (50 Hz), from MIDI or from audio.

From MIDI, `piano_roll_features` → [T, 48], each entry 0 or 1 (frame t covers [t / rate, (t + 1) / rate)):

    [ 0:12)  pitch classes sounding (C first)
    [12:24)  pitch classes with a note starting in the frame
    [24:32)  octaves sounding (MIDI pitch // 12 - 1, clipped to 0-7: octave 4 holds middle C)
    [32:48)  GM program families sounding (program // 8: piano, chromatic percussion, organ, guitar, ...)

Drums are left out. From audio, `chroma_features` → [T, 12]: MusicGen-melody's condition (Copet et al. 2023,
§2.4: "the dominant time-frequency bin in each time step", an argmax-quantized chromagram), one-hot per
frame, all zeros where the frame is silent, from `musiclm.dsp`'s chroma filterbank. Its rows line up with
the first 12 columns of the MIDI features, so notes and a played or hummed melody share one space.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from symusic import Score
from torch import Tensor

from musiclm.dsp import chroma_filterbank, stft
from musiclm.errors import MusicLMError
from musiclm.notes.midi import MidiLike, load_midi, note_array

FRAME_RATE = 50.0
PITCH_CLASSES = slice(0, 12)
ONSETS = slice(12, 24)
OCTAVES = slice(24, 32)
FAMILIES = slice(32, 48)
NUM_FEATURES = 48
MAX_FRAMES = 50 * 60 * 30  # 30 minutes at 50 Hz: longer is a mistake, not music to condition on


def piano_roll_features(midi: MidiLike, frame_rate: float = FRAME_RATE, num_frames: int | None = None) -> Tensor:
    """MIDI (path, bytes or Score) → features [T, 48] float32; T = `num_frames` (notes past it are cut, a
    shorter score is padded with silence) or, when None, enough frames to hold the last note."""
    if not (frame_rate > 0 and math.isfinite(frame_rate)):
        raise MusicLMError(f"frame rate must be a positive number, got {frame_rate}")
    # a file must hold pitched notes (load_midi says why not); a score in memory, such as a plan, may rest
    score = midi if isinstance(midi, Score) else load_midi(midi)
    notes = note_array(score)  # [M, 4] onset s, duration s, pitch, program
    if num_frames is None:
        num_frames = int(math.ceil(float((notes[:, 0] + notes[:, 1]).max(initial=0.0)) * frame_rate))
    if not 0 <= num_frames <= MAX_FRAMES:
        raise MusicLMError(f"{num_frames} frames is outside 0-{MAX_FRAMES} ({MAX_FRAMES / frame_rate / 60:g} min)")
    out = np.zeros((num_frames, NUM_FEATURES), dtype=np.float32)
    start = np.floor(notes[:, 0] * frame_rate + 1e-6).astype(np.int64)
    # a note sounds in every frame it overlaps, and in at least the frame it starts in
    stop = np.maximum(np.ceil((notes[:, 0] + notes[:, 1]) * frame_rate - 1e-6).astype(np.int64), start + 1)
    pitch = notes[:, 2].astype(np.int64)
    columns = np.stack(
        [
            pitch % 12,
            OCTAVES.start + np.clip(pitch // 12 - 1, 0, 7),
            FAMILIES.start + notes[:, 3].astype(np.int64) // 8,
        ],
        1,
    )  # [M, 3]
    for (a, b), cols in zip(np.stack([start, stop], 1), columns, strict=True):
        if a < num_frames:
            out[a : min(b, num_frames), cols] = 1.0
            out[a, ONSETS.start + cols[0]] = 1.0
    return torch.from_numpy(out)


def chroma_features(
    wav: Tensor | np.ndarray,
    sr: int,
    frame_rate: float = FRAME_RATE,
    num_frames: int | None = None,
    n_fft: int = 8192,
    silence_db: float = -60.0,
) -> Tensor:
    """Audio wav [N] or [C, N] (channels are averaged) at `sr` → one-hot chroma [T, 12] float32 at
    `frame_rate`; T = `num_frames`, or ceil(N * frame_rate / sr) (the codec's frame count). A frame whose
    chroma energy is `silence_db` below a full-scale sine's is all zeros. Long audio is processed a minute
    at a time, so memory stays flat."""
    wav = torch.as_tensor(wav, dtype=torch.float32)
    if wav.dim() == 2:
        wav = wav.mean(0)
    if wav.dim() != 1:
        raise MusicLMError(f"expected audio [N] or [C, N], got shape {list(wav.shape)}")
    if not torch.isfinite(wav).all():
        raise MusicLMError("the audio holds NaN or infinite samples")
    if sr < 4000:
        raise MusicLMError(f"sample rate {sr} Hz is too low for a chromagram (need 4000 Hz or more)")
    hop = sr / frame_rate
    T = int(math.ceil(wav.shape[0] / hop)) if num_frames is None else num_frames
    if not 0 <= T <= MAX_FRAMES:
        raise MusicLMError(f"{T} frames is outside 0-{MAX_FRAMES} ({MAX_FRAMES / frame_rate / 60:g} min)")
    n_fft = min(n_fft, 1 << int(math.log2(sr / 2)))  # ~0.5 s windows whatever the rate: semitones at C2
    fb = chroma_filterbank(sr, n_fft)  # [12, F]
    half = n_fft // 2
    padded = torch.nn.functional.pad(wav, (half, half + n_fft))  # centred frames, zeros beyond the ends
    energy = torch.zeros(T, 12)
    chunk = int(frame_rate * 60)
    for t0 in range(0, T, chunk):
        t1 = min(T, t0 + chunk)
        centres = torch.round(torch.arange(t0, t1) * hop).long()  # sample at the centre of each frame
        a = int(centres[0])
        b = min(int(centres[-1]) + n_fft, padded.shape[0])
        piece = padded[a:b]
        if piece.shape[0] < n_fft:
            piece = torch.nn.functional.pad(piece, (0, n_fft - piece.shape[0]))
        # frames at every sample offset would be wasteful: one STFT at the integer hop nearest `hop`,
        # then the frame nearest each exact centre
        step = max(1, int(round(hop)))
        spec = stft(piece, n_fft, step, center=False).abs().pow(2)[0]  # [F, frames]
        idx = torch.clamp(torch.round((centres - a).float() / step).long(), max=spec.shape[-1] - 1)
        energy[t0:t1] = (fb @ spec[:, idx]).t()
    full_scale = (n_fft / 4) ** 2 * 1.5  # a unit sine's energy through a Hann window (peak bin (n_fft / 4)^2)
    loud = energy.sum(-1) > full_scale * 10 ** (silence_db / 10)
    out = torch.zeros(T, 12)
    out[torch.arange(T), energy.argmax(-1)] = 1.0
    return out * loud[:, None]
