"""What a plan is judged by (issue 12, "the planner honours its fields" and "plans are new music").

* adherence: the key music21's analyzer finds in the plan's MIDI, its time signature and its tempo (quarter
  notes per minute over the meter's beat, in the caption's BPM) against the controls asked.
* novelty: the longest run of consecutive notes a plan shares with any training piece. Notes are compared
  by their intervals, so a copy in another key (training transposes by up to ±5 semitones) still counts:
  a run of n notes is n - 1 equal intervals in a row. Two lines per piece: the melody (the highest note at
  each onset) and all notes in onset order (lowest first within a chord).
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from symusic import Score

from musiclm.data.analysis import tempo_agrees
from musiclm.notes.midi import beat_quarters, meter_of, midi_bytes, pulse_bpm, tempo_of
from musiclm.notes.tokens import Controls, NoteTokenizer

RELATIVE = {"major": ("minor", 9), "minor": ("major", 3)}  # the relative key: its mode, tonic offset


def music21_key(score: Score) -> tuple[int, str]:
    """(tonic pitch class, mode) by music21's `analyze('key')` on the MIDI as music21 reads it."""
    from music21 import converter

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        key = converter.parse(io.BytesIO(midi_bytes(score)).getvalue(), format="midi").analyze("key")
    return key.tonic.pitchClass, key.mode


def adherence(score: Score, c: Controls, seconds: float, tempo_tolerance: float = 0.01) -> dict:
    """{key, key_relative, meter, tempo, pulse}: True where the plan of `seconds` is what was asked
    (key_relative also accepts the relative major/minor, as the audio evaluation does; tempo is the one the
    file states, pulse the one its notes carry, by the audio evaluation's rule), plus what was measured."""
    tonic, mode = music21_key(score)
    meter = meter_of(score)
    bpm = tempo_of(score) / beat_quarters(meter)
    pulse = pulse_bpm(score, seconds)
    rel_mode, offset = RELATIVE[c.mode]
    return {
        "key": (tonic, mode) == (c.key, c.mode),
        "key_relative": (tonic, mode) in ((c.key, c.mode), ((c.key + offset) % 12, rel_mode)),
        "meter": meter == c.meter,
        "tempo": abs(bpm - c.bpm) <= tempo_tolerance * c.bpm,
        "pulse": tempo_agrees(c.bpm, pulse),
        "measured": {"key": tonic, "mode": mode, "meter": meter, "bpm": round(bpm, 2), "pulse_bpm": round(pulse, 1)},
    }


def note_lines(tok: NoteTokenizer, ids) -> tuple[np.ndarray, np.ndarray]:
    """REMI ids (bars, with or without Bar tokens) → (melody pitches, all pitches) in onset order."""
    onsets: list[list[int]] = []
    for i in ids:
        kind = tok.kind[i]
        if kind in ("Bar", "Position"):
            if not onsets or onsets[-1]:
                onsets.append([])
        elif kind == "Pitch":
            if not onsets:
                onsets.append([])
            onsets[-1].append(int(tok.pitch_of[i]))
    chords = [sorted(o) for o in onsets if o]
    melody = np.array([c[-1] for c in chords], dtype=np.int64)
    every = np.array([p for c in chords for p in c], dtype=np.int64)
    return melody, every


_SEPARATOR = 1 << 20  # never an interval
_P = np.uint64(1_000_003)


def _intervals(lines: list[np.ndarray]) -> np.ndarray:
    """Lines of pitches → one array of their intervals, lines separated by `_SEPARATOR`."""
    parts = []
    for line in lines:
        parts += [np.diff(line), np.array([_SEPARATOR])]
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)


def longest_shared_runs(plans: list[np.ndarray], corpus: list[np.ndarray], max_notes: int = 512) -> list[int]:
    """For each plan line, the most consecutive notes it shares (as intervals) with any corpus line.

    L-grams of intervals are hashed (polynomial, mod 2^64) and L grows until no plan shares an L-gram;
    one pass over the corpus per L."""
    c = _intervals(corpus).astype(np.uint64)
    c_sep = np.concatenate([[0], np.cumsum(c == _SEPARATOR)])
    hc = np.zeros(len(c), dtype=np.uint64)
    ps = [np.diff(p).astype(np.uint64) for p in plans]
    hp = [np.zeros(len(p), dtype=np.uint64) for p in ps]
    best = [1 if len(p) else 0 for p in plans]  # one note is always shared
    with np.errstate(over="ignore"):
        for L in range(1, max_notes):
            n = len(c) - L + 1
            if n <= 0:
                break
            hc = hc[:n] * _P + c[L - 1 : L - 1 + n]
            clean = c_sep[L - 1 + 1 : L + n] - c_sep[:n] == 0  # no separator inside the L-gram
            known = np.unique(hc[clean])
            any_hit = False
            for k, p in enumerate(ps):
                m = len(p) - L + 1
                if m <= 0:
                    continue
                hp[k] = hp[k][:m] * _P + p[L - 1 : L - 1 + m]
                if best[k] == L and np.isin(hp[k], known).any():
                    best[k] = L + 1
                    any_hit = True
            if not any_hit:
                break
    return best
