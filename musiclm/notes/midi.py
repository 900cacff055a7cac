"""MIDI in and out (symusic), the checks a user's MIDI gets, and the facts the planner reads off notes.

    load_midi(path | bytes | Score) → symusic.Score in ticks, refused with one line when it is not usable
    note_array(score)                → [M, 4] onset s, duration s, pitch, GM program (drums left out)
    estimate_key(score)              → ("F#", "minor"): music21's default key finder on the notes
    clip_seconds(score, start, end)  → the notes sounding in [start, end), times relative to `start`

Meter and tempo: a MIDI file's tempo is in quarter notes per minute, while captions count beats of the meter
(music21's `beatDuration`: a dotted quarter in 6/8, a half note in 4/2); `beat_quarters` converts.
"""

from __future__ import annotations

import functools
import tempfile
import warnings
from pathlib import Path

import numpy as np
from symusic import Note, Score, Tempo, TimeSignature, Track

from musiclm.errors import MusicLMError

MidiLike = "str | os.PathLike | bytes | Score"  # a path, the bytes of a file, or a parsed score
MAX_MIDI_BYTES = 64 * 1024 * 1024  # a 10-minute orchestral MIDI is ~1 MB; anything far larger is not music


def load_midi(source: MidiLike, what: str | None = None) -> Score:
    """A MIDI file (path or bytes) or a Score → a Score in ticks with at least one pitched note.

    Raises MusicLMError for a missing, corrupt or empty file, and for one whose only notes are drums (a
    plan or a melody needs pitches)."""
    if isinstance(source, Score):
        score, name = source, what or "the MIDI score"
    else:
        if isinstance(source, bytes):
            data, name = source, what or "the MIDI data"
        else:
            path = Path(source)
            name = what or str(path)
            if not path.is_file():
                raise MusicLMError(f"{name}: no such MIDI file")
            if path.stat().st_size > MAX_MIDI_BYTES:
                raise MusicLMError(f"{name}: {path.stat().st_size >> 20} MB is too large for a MIDI file")
            data = path.read_bytes()
        try:
            score = Score.from_midi(data)
        except Exception as e:  # symusic raises RuntimeError/ValueError for a broken header or track
            raise MusicLMError(f"{name}: not a readable MIDI file ({str(e).splitlines()[0][:120]})") from None
    if not str(score.ttype).lower().endswith("tick"):
        score = score.to("tick")
    pitched = sum(len(t.notes) for t in score.tracks if not t.is_drum)
    if pitched == 0:
        drums = sum(len(t.notes) for t in score.tracks if t.is_drum)
        if drums:
            raise MusicLMError(f"{name}: only drum notes ({drums}); a melody or plan needs pitched notes")
        raise MusicLMError(f"{name}: the MIDI file has no notes")
    return score


def midi_bytes(score: Score) -> bytes:
    return bytes(score.dumps_midi())


def save_midi(score: Score, path: str | Path) -> Path:
    """Write `score` as a standard MIDI file, atomically (a reader never sees half a file)."""
    from musiclm.audio import atomic_write

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as part:
        Path(part).write_bytes(midi_bytes(score))
    return path


def from_music21(m21_score) -> Score:
    """A music21 score → Score, through music21's own MIDI writer (its instruments, ties and voices)."""
    with tempfile.TemporaryDirectory(prefix="musiclm-notes-") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        path = Path(tmp) / "x.mid"
        m21_score.write("midi", fp=str(path))
        return Score.from_midi(path.read_bytes())


def note_array(score: Score) -> np.ndarray:
    """[M, 4] float64: onset (s), duration (s), MIDI pitch, GM program of every pitched note, by onset."""
    seconds = score.to("second")
    rows = []
    for track in seconds.tracks:
        if track.is_drum or not len(track.notes):
            continue
        n = track.notes.numpy()
        rows.append(np.stack([n["time"], n["duration"], n["pitch"], np.full(len(n["time"]), track.program)], 1))
    if not rows:
        return np.zeros((0, 4))
    notes = np.concatenate(rows).astype(np.float64)
    return notes[np.lexsort((notes[:, 2], notes[:, 0]))]


def onset_strength(score: Score, seconds: float, rate: float) -> np.ndarray:
    """[ceil(seconds · rate) + 1] onset envelope of the pitched notes: at each note-on frame, log(1 + 4 · the
    summed velocities / 127). The note-level counterpart of an audio onset envelope (spectral flux), so
    `musiclm.data.analysis.tempo_from_envelope` reads the pulse the notes carry before anything is rendered."""
    env = np.zeros(int(np.ceil(seconds * rate)) + 1)
    for track in score.to("second").tracks:
        if track.is_drum or not len(track.notes):
            continue
        n = track.notes.numpy()
        frames = np.round(n["time"] * rate).astype(np.int64)
        keep = (frames >= 0) & (frames < len(env))
        np.add.at(env, frames[keep], n["velocity"][keep] / 127.0)
    return np.log1p(4.0 * env)


def pulse_bpm(score: Score, seconds: float) -> float:
    """The tempo the first `seconds` of pitched notes carry (0.0 for none): the audio tempo estimator
    (`musiclm.data.analysis.tempo_from_envelope`, Ellis 2007) on `onset_strength`. Measured 2026-11-30 on
    the 40 prompts of eval/eval_melody.py: it agrees with the tempo heard in the plan's render on 35 of 40,
    and flags 7 of the 8 plans heard at another tempo than asked (mostly at 2/3 of it: dotted rhythms, or 3
    notes in 10 s)."""
    from musiclm.data.analysis import ENVELOPE_RATE, tempo_from_envelope

    return tempo_from_envelope(onset_strength(score, seconds, ENVELOPE_RATE))


def meter_of(score: Score) -> str:
    """The time signature in force at the start ("4/4" when the file has none, as the MIDI standard says)."""
    if not len(score.time_signatures):
        return "4/4"
    ts = min(score.time_signatures, key=lambda t: t.time)
    return f"{ts.numerator}/{ts.denominator}"


def tempo_of(score: Score) -> float:
    """Quarter notes per minute in force at the start (120 when the file has none)."""
    if not len(score.tempos):
        return 120.0
    return float(min(score.tempos, key=lambda t: t.time).qpm)


@functools.lru_cache(maxsize=64)
def beat_quarters(meter: str) -> float:
    """Quarter notes per beat of `meter` as music21 counts beats (the synth corpus's `bpm` is in these)."""
    from music21 import meter as m21meter

    try:
        return float(m21meter.TimeSignature(meter).beatDuration.quarterLength)
    except Exception:
        raise MusicLMError(f"{meter!r} is not a time signature like 3/4 or 6/8") from None


def bar_quarters(meter: str) -> float:
    num, den = (int(x) for x in meter.split("/"))
    return num * 4.0 / den


@functools.lru_cache(maxsize=1)
def _key_profiles() -> np.ndarray:
    """[2, 12]: music21's default key weights (Aarden-Essen; `Stream.analyze('key')`), major then minor."""
    from music21.analysis.discrete import AardenEssen

    finder = AardenEssen()
    return np.array([finder.getWeights("major"), finder.getWeights("minor")], dtype=np.float64)


def key_from_histogram(histogram: np.ndarray) -> tuple[int, str, float]:
    """Pitch-class weights [12] (C first) → (tonic pitch class, mode, correlation), as music21's key finder:
    Pearson correlation with each rotation of the Aarden-Essen profiles, the best one wins."""
    h = np.asarray(histogram, dtype=np.float64)
    if h.sum() <= 0:
        return 0, "major", 0.0
    profiles = _key_profiles()
    hc = h - h.mean()
    best = (-2.0, 0, "major")
    for m, mode in enumerate(("major", "minor")):
        p = profiles[m] - profiles[m].mean()
        for tonic in range(12):
            rotated = np.roll(p, tonic)  # weight of pitch class j in key `tonic` is profile[(j - tonic) % 12]
            denom = np.sqrt((rotated**2).sum() * (hc**2).sum())
            r = float((rotated * hc).sum() / denom) if denom > 0 else 0.0
            if r > best[0]:
                best = (r, tonic, mode)
    return best[1], best[2], best[0]


def pitch_histogram(notes: np.ndarray) -> np.ndarray:
    """note_array rows → duration-weighted pitch-class histogram [12]."""
    h = np.zeros(12)
    if len(notes):
        np.add.at(h, notes[:, 2].astype(int) % 12, notes[:, 1])
    return h


def estimate_key(score: Score) -> tuple[str, str]:
    """("F#", "minor"): the key music21's `analyze('key')` finds, from the notes' duration-weighted pitch
    classes (computed here without building a music21 stream; the spelling follows `captions.key_name`)."""
    from musiclm.data.captions import key_name

    tonic, mode, _ = key_from_histogram(pitch_histogram(note_array(score)))
    return key_name(tonic, mode), mode


def clip_seconds(score: Score, start: float, end: float) -> Score:
    """The notes of `score` that sound in [start, end) seconds, shifted so `start` is time 0 and cut at the
    edges (a note held into the clip starts at 0: that is what the audio of the clip holds). The tempo and
    time signature in force at `start` are kept at time 0. Returns a Score in ticks."""
    seconds = score.to("second")
    out = Score(score.ticks_per_quarter, "second")
    qpm = [t for t in seconds.tempos if t.time <= start]
    out.tempos.append(Tempo(0.0, qpm=qpm[-1].qpm if qpm else 120.0, ttype="second"))
    ts = [t for t in seconds.time_signatures if t.time <= start]
    if ts:
        out.time_signatures.append(TimeSignature(0.0, ts[-1].numerator, ts[-1].denominator, "second"))
    for track in seconds.tracks:
        kept = Track(track.name, track.program, track.is_drum, ttype="second")
        for n in track.notes:
            on, off = max(n.time, start), min(n.time + n.duration, end)
            if off > on and n.time < end:
                kept.notes.append(Note(on - start, off - on, n.pitch, n.velocity, "second"))
        if len(kept.notes):
            out.tracks.append(kept)
    return out.to("tick")
