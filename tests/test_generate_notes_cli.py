"""`musiclm generate` with notes: text → plan → LM (--midi-out keeps the plan), --melody MIDI or audio,
--no-plan; what cannot work (notes for a text-only model, a plan that does not exist) is one line, exit 2."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
from symusic import Note, Score, Tempo, Track
from test_lm_model import debug_model_dir

from musiclm.cli import main
from musiclm.notes.midi import load_midi, note_array, save_midi

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000


@pytest.fixture(scope="module")
def notes_model(tmp_path_factory):
    return debug_model_dir(tmp_path_factory.mktemp("notes"), SR, note_features=48)


@pytest.fixture(scope="module")
def text_model(tmp_path_factory):
    return debug_model_dir(tmp_path_factory.mktemp("text"), SR)


def tune(path, pitches=(60, 64, 67, 72)):
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track("tune", 0, False)
    for i, pitch in enumerate(pitches):
        track.notes.append(Note(i * 480, 480, pitch, 80))  # a half second each
    score.tracks.append(track)
    return save_midi(score, path)


def run(model, *args) -> int:
    return main(["generate", *args, "--model", str(model), "--duration", "1", "--seed", "5"])


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclm: error:") and "\n" not in err, err
    return err


def test_text_goes_through_a_plan_that_midi_out_keeps(notes_model, tmp_path, capsys):
    out, mid = tmp_path / "a.wav", tmp_path / "a.mid"
    assert run(notes_model, "a slow chorale for strings in D minor", "-o", str(out), "--midi-out", str(mid)) == 0
    assert "plan: D minor" in capsys.readouterr().err
    audio, sr = sf.read(out)
    assert sr == SR and len(audio) == SR and np.abs(audio).max() > 0
    notes = note_array(load_midi(mid))
    assert len(notes) > 0 and notes[:, 0].min() < 1.0  # the plan's notes, from the start
    # the same call again gives the same plan and audio; --no-plan plays the text alone, differently
    again, unplanned = tmp_path / "b.wav", tmp_path / "c.wav"
    assert run(notes_model, "a slow chorale for strings in D minor", "-o", str(again)) == 0
    assert run(notes_model, "a slow chorale for strings in D minor", "-o", str(unplanned), "--no-plan") == 0
    assert np.array_equal(sf.read(again)[0], audio) and not np.array_equal(sf.read(unplanned)[0], audio)


def test_several_prompts_get_one_plan_file_each(notes_model, tmp_path):
    mid = tmp_path / "plans" / "p.mid"
    assert run(notes_model, "calm piano in C major", "fast folk flute in G major", "-o", str(tmp_path / "x.wav"),
               "--midi-out", str(mid)) == 0  # fmt: skip
    assert (tmp_path / "plans" / "p-1.mid").is_file() and (tmp_path / "plans" / "p-2.mid").is_file()
    assert (tmp_path / "x-1.wav").is_file() and (tmp_path / "x-2.wav").is_file()


def test_a_midi_melody_is_played_and_written_back_cut_to_the_duration(notes_model, tmp_path):
    melody = tune(tmp_path / "tune.mid", pitches=(60, 62, 64, 65))
    out, mid, plain = tmp_path / "m.wav", tmp_path / "m.mid", tmp_path / "p.wav"
    assert run(notes_model, "a brass quintet", "-o", str(out), "--melody", str(melody), "--midi-out", str(mid)) == 0
    written = note_array(load_midi(mid))
    assert list(written[:, 2]) == [60, 62]  # the melody's notes within the 1 s asked, no plan of its own
    assert run(notes_model, "a brass quintet", "-o", str(plain), "--no-plan") == 0
    assert not np.array_equal(sf.read(out)[0], sf.read(plain)[0])  # the notes changed the audio
    # guidance on the notes alone: 0 is the text-guided audio without notes (and without the render's codes,
    # --guide 0), a stronger one differs again
    unguided, stronger = tmp_path / "u.wav", tmp_path / "s.wav"
    args = ["--melody", str(melody), "--note-cfg", "0", "--guide", "0"]
    assert run(notes_model, "a brass quintet", "-o", str(unguided), *args) == 0
    assert np.array_equal(sf.read(unguided)[0], sf.read(plain)[0])
    assert run(notes_model, "a brass quintet", "-o", str(stronger), "--melody", str(melody), "--note-cfg", "8") == 0
    assert not np.array_equal(sf.read(stronger)[0], sf.read(out)[0])


def test_an_audio_melody_is_played_but_has_no_notes_to_write(notes_model, tmp_path, capsys):
    hum = tmp_path / "hum.wav"
    t = np.arange(44100) / 44100
    sf.write(hum, np.stack([0.3 * np.sin(2 * np.pi * 440 * t)] * 2, 1), 44100)  # stereo, another rate
    assert run(notes_model, "a string quartet", "-o", str(tmp_path / "q.wav"), "--melody", str(hum)) == 0
    capsys.readouterr()
    code = run(notes_model, "a string quartet", "-o", str(tmp_path / "r.wav"), "--melody", str(hum),
               "--midi-out", str(tmp_path / "r.mid"))  # fmt: skip
    assert code == 2 and "chromagram" in one_line_error(capsys)
    assert not (tmp_path / "r.wav").exists() and not (tmp_path / "r.mid").exists()


@pytest.mark.parametrize("case", ["text_model_melody", "text_model_midi_out", "no_plan_midi_out", "bad_melody",
                                  "silent_melody", "late_midi", "midi_out_name", "midi_out_exists",
                                  "note_cfg"])  # fmt: skip
def test_what_cannot_work_is_one_line(notes_model, text_model, tmp_path, capsys, case):
    melody = tune(tmp_path / "tune.mid")
    model, extra, words = notes_model, [], ""
    if case == "text_model_melody":
        model, extra, words = text_model, ["--melody", str(melody)], "takes no notes"
    elif case == "text_model_midi_out":
        model, extra, words = text_model, ["--midi-out", str(tmp_path / "x.mid")], "no plan"
    elif case == "no_plan_midi_out":
        extra, words = ["--no-plan", "--midi-out", str(tmp_path / "x.mid")], "no plan"
    elif case == "bad_melody":
        (tmp_path / "bad.mid").write_bytes(b"MThd\x00\x00\x00\x06junk")
        extra, words = ["--melody", str(tmp_path / "bad.mid")], "not a readable MIDI"
    elif case == "silent_melody":
        sf.write(tmp_path / "silence.wav", np.zeros(SR), SR)
        extra, words = ["--melody", str(tmp_path / "silence.wav")], "silent"
    elif case == "late_midi":  # notes, but none in the second that is asked for
        late = Score(480)
        late.tempos.append(Tempo(0, qpm=120.0))
        late.tracks.append(Track("late", 0, False))
        late.tracks[0].notes.append(Note(480 * 10, 480, 60, 80))  # at 5 s
        save_midi(late, tmp_path / "late.mid")
        extra, words = ["--melody", str(tmp_path / "late.mid")], "no notes in the first 1 s (the first starts at 5.0 s)"
    elif case == "midi_out_name":
        extra, words = ["--midi-out", str(tmp_path / "plan.txt")], ".mid"
    elif case == "midi_out_exists":
        (tmp_path / "x.mid").write_bytes(b"keep me")
        extra, words = ["--midi-out", str(tmp_path / "x.mid")], "exists"
    elif case == "note_cfg":
        extra, words = ["--note-cfg", "-1"], "note cfg"
    assert run(model, "calm piano", "-o", str(tmp_path / "x.wav"), *extra) == 2
    assert words in one_line_error(capsys)
    assert not (tmp_path / "x.wav").exists()
    if case == "midi_out_exists":
        assert (tmp_path / "x.mid").read_bytes() == b"keep me"
