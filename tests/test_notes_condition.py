"""`--melody FILE` → the LM's note features: MIDI gives its notes, audio its chromagram in the pitch-class
columns; bad melodies (silent, corrupt, drum-only, empty) are refused in one line; long ones are cut."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from symusic import Note, Score, Tempo, Track

from musiclm.errors import MusicLMError
from musiclm.notes.condition import chroma_view, is_midi_file, melody_features
from musiclm.notes.features import NUM_FEATURES, ONSETS, PITCH_CLASSES
from musiclm.notes.midi import save_midi

pytestmark = pytest.mark.usefixtures("one_thread")


def make_score(notes, drum=False) -> Score:
    """notes: (onset quarters, duration quarters, pitch) at 120 quarters per minute → Score in ticks."""
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track("melody", 0, drum)
    for onset, duration, pitch in notes:
        track.notes.append(Note(int(onset * 480), int(duration * 480), pitch, 80))
    score.tracks.append(track)
    return score


def sine(freq: float, seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.3 * np.sin(2 * np.pi * freq * t).astype(np.float32)
    return np.stack([x] * channels, 1)


def test_a_midi_melody_gives_its_notes(tmp_path):
    path = save_midi(make_score([(0, 2, 60), (2, 2, 62)]), tmp_path / "tune.mid")  # C4 then D4, 1 s each
    f = melody_features(path, 150)
    assert f.shape == (150, NUM_FEATURES)
    pcs = f[:, PITCH_CLASSES].argmax(-1)
    assert (pcs[:50] == 0).all() and (pcs[50:100] == 2).all()
    assert not f[100:].any()  # padded with silence past the score
    assert f[0, ONSETS.start + 0] == 1 and f[50, ONSETS.start + 2] == 1
    assert melody_features(path, 60).shape == (60, NUM_FEATURES)  # cut to the duration


def test_a_played_melody_gives_its_chroma_at_any_rate_and_channel_count(tmp_path):
    path = tmp_path / "hum.wav"
    sr = 44100
    audio = np.concatenate([sine(440.0, 1.0, sr, 2), sine(523.25, 1.0, sr, 2)])  # A4 then C5, stereo
    sf.write(path, audio, sr)
    f = melody_features(path, 150)
    assert f.shape == (150, NUM_FEATURES)
    assert not f[:, 12:].any()  # audio fills the pitch-class columns only
    pcs = f[:, PITCH_CLASSES].argmax(-1)
    assert (pcs[5:45] == 9).float().mean() > 0.9 and (pcs[55:95] == 0).float().mean() > 0.9
    assert not f[110:].any()  # the melody is 2 s; the rest is left to the text


def test_a_long_melody_is_cut_and_read_only_in_part(tmp_path):
    path = tmp_path / "long.flac"
    sf.write(path, sine(330.0, 600.0, 8000), 8000)  # ten minutes
    f = melody_features(path, 100)
    assert f.shape == (100, NUM_FEATURES) and f[:, 4].mean() > 0.9  # E


@pytest.mark.parametrize(
    "kind, message",
    [
        ("silence", "silent"),
        ("corrupt_mid", "not a readable MIDI"),
        ("drums", "only drum notes"),
        ("no_notes", "no notes"),
        ("not_audio", "unreadable audio"),
        ("missing", "not found"),
    ],
)
def test_bad_melodies_are_one_clear_error(tmp_path, kind, message):
    path = tmp_path / "x.wav"
    if kind == "silence":
        sf.write(path, np.zeros((24000, 1), np.float32), 24000)
    elif kind == "corrupt_mid":
        path = tmp_path / "x.mid"
        path.write_bytes(b"MThd\x00\x00\x00\x06garbage")
    elif kind == "drums":
        path = save_midi(make_score([(0, 1, 36), (1, 1, 38)], drum=True), tmp_path / "d.mid")
    elif kind == "no_notes":
        path = save_midi(make_score([]), tmp_path / "e.mid")
    elif kind == "not_audio":
        path.write_text("hello, not audio")
    with pytest.raises(MusicLMError, match=message) as e:
        melody_features(path, 100)
    assert "\n" not in str(e.value)


def test_midi_is_recognised_by_content_and_chroma_view_keeps_only_pitch_classes(tmp_path):
    path = save_midi(make_score([(0, 1, 67)]), tmp_path / "tune.bin")
    assert is_midi_file(path) and not is_midi_file(tmp_path / "absent.wav")
    chroma = torch.eye(12)[[7, 7, 0]]
    view = chroma_view(chroma)
    assert view.shape == (3, NUM_FEATURES) and torch.equal(view[:, :12], chroma) and not view[:, 12:].any()


def test_a_plan_that_rests_through_a_short_duration_is_silence_not_an_error():
    from musiclm.notes.condition import notes_features

    late = make_score([(8, 2, 60)])  # the first note at 4 s
    assert not notes_features(late, 50, 50.0).any()  # 1 s asked: nothing sounds yet
    assert not notes_features(make_score([]), 50, 50.0).any()
    assert notes_features(late, 250, 50.0)[200:, 0].all()
