"""What the note-conditioned LM is given: per-frame note features [T, 48] from a plan, a MIDI file, or audio.

    plan (symusic Score) or tune.mid --piano_roll_features--> [T, 48]  (pitch classes, onsets, octaves, families)
    tune.wav (any rate, any channels) --chroma_features--> [T, 12] --chroma_view--> [T, 48]  (columns 0:12 only)

The audio path is MusicGen-melody's (Copet et al. 2023, §2.4): an argmax-quantized chromagram of the played,
hummed or whistled line. The LM is trained with that same chroma-only view of its clips (`chroma_share`), so a
melody played in is a condition it has seen. A melody shorter than the requested duration conditions its own
length and leaves the rest to the text; a longer one is cut (only the part that is used is read).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.notes.features import FRAME_RATE, NUM_FEATURES, PITCH_CLASSES, chroma_features, piano_roll_features
from musiclm.notes.midi import MidiLike

MIDI_EXTENSIONS = (".mid", ".midi", ".smf")
MIDI_MAGIC = b"MThd"  # the first four bytes of a standard MIDI file


def chroma_view(chroma: Tensor) -> Tensor:
    """chroma [T, 12] → features [T, 48] with only the pitch-class columns set (what the LM sees for audio)."""
    assert chroma.dim() == 2 and chroma.shape[1] == 12, f"expected chroma [T, 12], got {list(chroma.shape)}"
    out = torch.zeros(chroma.shape[0], NUM_FEATURES)
    out[:, PITCH_CLASSES] = chroma
    return out


def is_midi_file(path: str | Path) -> bool:
    """By name (.mid/.midi) or by content (a standard MIDI file starts with 'MThd')."""
    path = Path(path)
    if path.suffix.lower() in MIDI_EXTENSIONS:
        return True
    try:
        with open(path, "rb") as f:
            return f.read(4) == MIDI_MAGIC
    except OSError:
        return False


def notes_features(midi: MidiLike, num_frames: int, frame_rate: float = FRAME_RATE) -> Tensor:
    """A plan or MIDI file → features [num_frames, 48] (notes past the end are cut, a short score padded)."""
    return piano_roll_features(midi, frame_rate, num_frames)


def audio_melody_features(path: str | Path, num_frames: int, frame_rate: float = FRAME_RATE) -> Tensor:
    """An audio file with a melody (any rate and channel count) → chroma-only features [num_frames, 48].

    Raises MusicLMError for an unreadable file or a melody with no pitched sound in the part that is used."""
    from musiclm.audio import load_audio

    seconds = num_frames / frame_rate
    wav, sr = load_audio(path, duration=seconds + 1.0)  # only what conditions the output (+ the window's reach)
    if wav.shape[-1] == 0:
        raise MusicLMError(f"{path}: the melody has no samples")
    chroma = chroma_features(wav, sr, frame_rate)  # [t, 12], t = the melody's own frames
    chroma = chroma[:num_frames]
    if not bool(chroma.any()):
        raise MusicLMError(f"{path}: the melody is silent (no pitched sound above -60 dB in the first {seconds:g} s)")
    if chroma.shape[0] < num_frames:
        chroma = torch.nn.functional.pad(chroma, (0, 0, 0, num_frames - chroma.shape[0]))
    return chroma_view(chroma)


def melody_features(path: str | Path, num_frames: int, frame_rate: float = FRAME_RATE) -> Tensor:
    """`--melody FILE`: MIDI (the notes themselves) or audio (its chromagram) → features [num_frames, 48]."""
    if num_frames < 1 or not math.isfinite(frame_rate):
        raise MusicLMError(f"a melody needs at least one frame, got {num_frames}")
    path = Path(path)
    if not path.is_file():
        raise MusicLMError(f"melody file not found: {path}")
    if is_midi_file(path):
        return notes_features(path, num_frames, frame_rate)
    return audio_melody_features(path, num_frames, frame_rate)


def plan_features(
    prompts: list[str],
    seconds: float,
    seeds: list[int | None],
    frame_rate: float = FRAME_RATE,
    planner=None,
    listen=None,
) -> tuple[Tensor, list]:
    """Text → notes for each prompt (`musiclm.notes.planner.plan`, one seed each) → (features [B, T, 48],
    the plans); T covers `seconds` at `frame_rate` (the codec's frames). A None seed draws a fresh one.
    `listen`: how the planner hears its renders (`plan(listen=)`)."""
    from musiclm.notes.planner import plan

    num_frames = int(math.ceil(seconds * frame_rate - 1e-9))
    seeds = [int(torch.randint(0, 2**62, ())) if s is None else s % 2**63 for s in seeds]
    plans = [plan(p, seconds, seed=s, planner=planner, listen=listen) for p, s in zip(prompts, seeds, strict=True)]
    features = torch.stack([notes_features(p.midi, num_frames, frame_rate) for p in plans])
    return features, plans
