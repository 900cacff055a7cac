"""Notes: MIDI files round-trip and bad ones are refused in one line; REMI tokens round-trip; a prompt reads
back to its fields; per-frame features put notes where they sound."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
import torch
from symusic import Note, Score, Tempo, TimeSignature, Track

from musiclm.data.captions import make_caption
from musiclm.errors import MusicLMError
from musiclm.notes.features import FAMILIES, NUM_FEATURES, OCTAVES, ONSETS, chroma_features, piano_roll_features
from musiclm.notes.midi import (
    clip_seconds,
    estimate_key,
    load_midi,
    meter_of,
    midi_bytes,
    note_array,
    save_midi,
    tempo_of,
)
from musiclm.notes.prompt import controls_from_prompt, parse_prompt
from musiclm.notes.tokens import Controls, NoteTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")
TPQ = 480


def make_score(notes, qpm=120.0, meter=(4, 4), program=0, drum=False) -> Score:
    """notes: (onset quarters, duration quarters, pitch[, program]) → Score in ticks."""
    score = Score(TPQ)
    score.tempos.append(Tempo(0, qpm=qpm))
    score.time_signatures.append(TimeSignature(0, *meter))
    tracks: dict[int, Track] = {}
    for n in notes:
        p = n[3] if len(n) > 3 else program
        if p not in tracks:
            tracks[p] = Track(f"p{p}", p, drum)
        tracks[p].notes.append(Note(int(n[0] * TPQ), int(n[1] * TPQ), n[2], 80))
    for t in tracks.values():
        score.tracks.append(t)
    return score


C_MAJOR_THEN_REST = [(0, 2, 60), (0, 2, 64), (0, 2, 67)]  # a C major chord for one second at 120 qpm


@pytest.fixture(scope="module")
def tok():
    return NoteTokenizer()


# ---- MIDI files -------------------------------------------------------------------------------------------
def test_midi_file_round_trips(tmp_path):
    score = make_score([(0, 1, 60, 0), (1, 0.5, 62, 0), (1, 3, 43, 42), (2.5, 1.5, 79, 73)], qpm=90, meter=(3, 4))
    path = save_midi(score, tmp_path / "x.mid")
    back = load_midi(path)
    np.testing.assert_allclose(note_array(back), note_array(score), atol=1e-6)
    assert meter_of(back) == "3/4" and abs(tempo_of(back) - 90) < 1e-3
    assert midi_bytes(load_midi(midi_bytes(score))) == midi_bytes(score)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda p: p.write_bytes(b"MThd\x00\x00\x00\x06garbage"), "not a readable MIDI file"),
        (lambda p: p.write_bytes(b""), "not a readable MIDI file"),
        (lambda p: save_midi(make_score([]), p), "has no notes"),
        (lambda p: save_midi(make_score([(0, 1, 36), (1, 1, 38)], drum=True), p), "only drum notes"),
        (lambda p: None, "no such MIDI file"),
    ],
    ids=["corrupt", "empty-file", "no-notes", "drums-only", "missing"],
)
def test_bad_midi_is_one_clear_error(tmp_path, make, message):
    path = tmp_path / "bad.mid"
    make(path)
    with pytest.raises(MusicLMError, match=message) as e:
        load_midi(path)
    assert "\n" not in str(e.value)
    with pytest.raises(MusicLMError):
        piano_roll_features(path, 50.0)


def test_clip_keeps_the_notes_sounding_in_the_window():
    score = make_score([(0, 4, 48), (2, 1, 60), (5, 1, 62)], qpm=60)  # seconds == quarters
    clip = note_array(clip_seconds(score, 1.0, 4.0))
    # the held C3 enters at 0, cut at the end; the C4 keeps its place; the D4 after the window is gone
    np.testing.assert_allclose(clip[:, :3], [[0.0, 3.0, 48], [1.0, 1.0, 60]], atol=1e-2)


def test_key_is_music21s_on_a_chorale():
    from music21 import corpus

    from musiclm.notes.midi import from_music21

    s = corpus.parse("bach/bwv66.6")
    expected = s.analyze("key")
    assert estimate_key(from_music21(s)) == (expected.tonic.name.replace("-", "b"), expected.mode)


# ---- tokens -----------------------------------------------------------------------------------------------
def test_tokens_round_trip_notes_programs_meter_and_tempo(tok):
    notes = [(0, 1, 67, 40), (0, 2, 48, 42), (1, 0.5, 69, 40), (1.5, 0.5, 71, 40), (3, 1, 72, 40), (3, 4, 50, 42)]
    score = make_score(notes, qpm=120, meter=(3, 4))
    bars = tok.encode_bars(score)
    assert len(bars) == 2  # onsets in bars 1 and 2 of 3/4 (a note held into bar 3 opens no bar)
    c = Controls(key=7, mode="major", bpm=120.0, meter="3/4", programs=(40, 42))
    ids = tok.window(c, bars, end=True)
    names = [tok.names[i] for i in ids[:9]]
    assert names == [
        "BOS_None",
        "Key_7",
        "Mode_major",
        "Genre_any",
        "Inst_40",
        "Inst_42",
        "Bar_None",
        "TimeSig_3/4",
        "Position_0",
    ]
    back = tok.decode(ids, c)
    np.testing.assert_allclose(note_array(back)[:, :4], note_array(score)[:, :4], atol=1e-3)
    assert meter_of(back) == "3/4" and abs(tempo_of(back) - 120) < 1e-3


@pytest.mark.parametrize(
    ("meter", "onsets", "accents"),
    [
        ((4, 4), [0, 1, 1.5, 2, 4], "BbobB"),  # bar, beat, between beats, beat, next bar
        ((6, 8), [0, 0.5, 1.5, 3], "BobB"),  # 6/8: two dotted-quarter beats a bar
    ],
)
def test_plans_are_accented_by_the_meter(tok, meter, onsets, accents):
    from musiclm.notes.tokens import ACCENT_BEAT, ACCENT_DOWNBEAT, ACCENT_OFFBEAT, DYNAMICS_VELOCITY

    assert ACCENT_DOWNBEAT >= ACCENT_BEAT > 0 > ACCENT_OFFBEAT  # bars, then beats, stand out
    accents = [{"B": ACCENT_DOWNBEAT, "b": ACCENT_BEAT, "o": ACCENT_OFFBEAT}[a] for a in accents]

    score = make_score([(t, 0.5, 60 + i) for i, t in enumerate(onsets)], meter=meter)
    for dynamics in ("soft", "loud"):
        c = Controls(meter=f"{meter[0]}/{meter[1]}", dynamics=dynamics)
        back = tok.decode(tok.window(c, tok.encode_bars(score)), c)
        velocities = [n.velocity for n in sorted((n for t in back.tracks for n in t.notes), key=lambda n: n.time)]
        base = DYNAMICS_VELOCITY[dynamics]
        assert velocities == [min(127, base + a) for a in accents]


def test_exact_tempo_is_written_whatever_the_bucket(tok):
    bars = tok.encode_bars(make_score(C_MAJOR_THEN_REST))
    c = Controls(bpm=77.0, meter="6/8")  # 6/8: a beat is a dotted quarter, 77 beats = 115.5 quarters
    assert abs(tempo_of(tok.decode(tok.window(c, bars), c)) - 115.5) < 1e-2


def test_unknown_meter_and_bad_controls_are_refused(tok):
    with pytest.raises(MusicLMError, match="meter 7/8"):
        tok.header_ids("7/8", 120)
    for bad in (Controls(mode="dorian"), Controls(bpm=math.nan), Controls(programs=()), Controls(genre="techno")):
        with pytest.raises(MusicLMError):
            bad.check()


# ---- prompts ----------------------------------------------------------------------------------------------
def test_captions_read_back_to_their_fields():
    rng = random.Random(0)
    for i in range(40):
        fields = {
            "key": rng.choice(["C", "Eb", "F#", "A", "Bb"]),
            "mode": rng.choice(["major", "minor"]),
            "bpm": float(rng.randint(50, 160)),
            "meter": rng.choice(["3/4", "4/4", "6/8"]),
            "instruments": ["violin"],
            "ensemble": "solo violin",
            "genre": "chorale",
        }
        caption = make_caption(fields, seed=i)
        c = controls_from_prompt(caption, seed=i)
        stated = parse_prompt(caption)
        if "key" in stated:
            assert (c.key, c.mode) == ({"C": 0, "Eb": 3, "F#": 6, "A": 9, "Bb": 10}[fields["key"]], fields["mode"])
        if "bpm" in stated:
            assert c.bpm == fields["bpm"]
        if "meter" in stated:
            assert c.meter == fields["meter"]
        if "programs" in stated:
            assert c.programs == (40,)


def test_a_genre_named_after_an_ensemble_does_not_name_the_instruments():
    # the synth corpus's captions: "string quartet movement" is the genre, the organ plays it
    caption = "relaxed, sad, C sharp minor, a pipe organ, 69 BPM, classical string quartet movement, flowing"
    assert parse_prompt(caption)["programs"] == (19,)
    assert parse_prompt(caption)["genre"] == "string quartet movement"
    # with no other instrument named, the genre's ensemble plays it
    assert parse_prompt("a string quartet movement in G major")["programs"] == (40, 40, 41, 42)
    assert parse_prompt("a string quartet playing a folk song")["programs"] == (40, 40, 41, 42)


def test_unstated_fields_come_from_the_seed():
    a, b = controls_from_prompt("a piece", seed=1), controls_from_prompt("a piece", seed=1)
    assert a == b
    assert len({controls_from_prompt("a piece", seed=s).key for s in range(20)}) > 3
    c = controls_from_prompt("a fast reel for string quartet in 2/4, loud", seed=0, key=2, mode="minor")
    assert (c.key, c.mode, c.meter, c.programs, c.genre, c.dynamics) == (
        2,
        "minor",
        "2/4",
        (40, 40, 41, 42),
        "folk reel",
        "loud",
    )
    assert 122 <= c.bpm <= 150


# ---- features ---------------------------------------------------------------------------------------------
def test_piano_roll_marks_a_c_major_chord_and_silence():
    score = make_score([*C_MAJOR_THEN_REST, (4, 2, 69, 40)])  # the chord for 1 s, silence, A4 on violin at 2 s
    f = piano_roll_features(score, 50.0, 200)
    assert f.shape == (200, NUM_FEATURES) and f.dtype == torch.float32
    chord, rest, violin = f[:50], f[50:100], f[100:150]
    assert (chord[:, :12].nonzero()[:, 1].unique().tolist()) == [0, 4, 7]
    assert chord[0, ONSETS].nonzero().flatten().tolist() == [0, 4, 7] and chord[1:, ONSETS].sum() == 0
    assert chord[:, OCTAVES].nonzero()[:, 1].unique().tolist() == [4]  # C4-G4: octave 4
    assert chord[:, FAMILIES].nonzero()[:, 1].unique().tolist() == [0]  # piano
    assert rest.sum() == 0 and f[150:].sum() == 0
    assert violin[:, :12].nonzero()[:, 1].unique().tolist() == [9] and violin[:, FAMILIES][:, 5].all()
    assert piano_roll_features(score, 50.0).shape[0] == 150  # default: up to the last note's end


def test_chroma_is_one_hot_on_the_sounding_pitch_class_and_zero_in_silence():
    sr = 24000
    t = torch.arange(sr) / sr
    wav = torch.cat([0.3 * torch.sin(2 * math.pi * 440.0 * t), torch.zeros(sr)])  # A4 for 1 s, then silence
    f = chroma_features(wav, sr, 50.0)
    assert f.shape == (100, 12)
    assert (f[5:45].argmax(-1) == 9).all() and (f[5:45].sum(-1) == 1).all()
    assert f[60:].sum() == 0
    assert chroma_features(torch.zeros(2, sr), sr).sum() == 0  # silence, stereo
    # other rates give the same frames: 44.1 kHz (hop 882) and 22.05 kHz (hop 441)
    for rate in (44100, 22050):
        t = torch.arange(rate) / rate
        g = chroma_features(0.3 * torch.sin(2 * math.pi * 261.63 * t), rate, 50.0)
        assert g.shape == (50, 12) and (g[5:45].argmax(-1) == 0).all()
    with pytest.raises(MusicLMError):
        chroma_features(torch.full((100,), float("nan")), sr)
