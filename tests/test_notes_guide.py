"""The guide: codes of a render of the notes that the LM keeps for its first codebooks (`musiclm.notes.guide`,
`generate_codes(guide=)`); the render itself (FluidSynth), the arrangement for the prompt's instruments, and
`musiclm generate --guide` with its one-line refusals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from symusic import Note, Score, Tempo, Track
from test_generate_notes_cli import notes_model, one_line_error, run, tune  # noqa: F401 (fixture)
from test_lm_model import text_batch, tiny_lm

from musiclm.data.render import DEFAULT_SOUNDFONT
from musiclm.errors import MusicLMError
from musiclm.lm.sample import SamplingParams, generate_codes
from musiclm.notes.features import chroma_features
from musiclm.notes.guide import GUIDE_RMS_DB, arrange, guide_codes, render_notes

pytestmark = pytest.mark.usefixtures("one_thread")
needs_fluidsynth = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path(DEFAULT_SOUNDFONT).is_file(),
    reason="needs fluidsynth and fluid-soundfont-gm (make system-deps)",
)
SAMPLED = SamplingParams(top_k=8, cfg=3.0)


def chord(pitches=(60, 64, 67), seconds=1.0, program=0, drums: bool = False) -> Score:
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track("chord", program, drums)
    for pitch in pitches:
        track.notes.append(Note(0, int(seconds * 960), pitch, 90))
    score.tracks.append(track)
    return score


# ---- the sampler keeps the guide --------------------------------------------------------------------
def test_guide_codes_are_kept_and_the_finer_codebooks_are_sampled():
    model = tiny_lm(note_features=48)  # card 32, K 4, max_frames 24
    ids, mask = text_batch()
    guide = torch.randint(0, 32, (1, 2, 20), generator=torch.Generator().manual_seed(0))
    free = generate_codes(model, ids, mask, 20, SAMPLED, seed=3)
    kept = generate_codes(model, ids, mask, 20, SAMPLED, seed=3, guide=guide)
    assert torch.equal(kept[:, :2], guide.expand(2, -1, -1))
    assert not torch.equal(kept[:, 2:], free[:, 2:])  # the finer codebooks hear the coarse ones
    # past the guide's end the model writes every codebook; a prompt's frames win over the guide
    short = generate_codes(model, ids, mask, 20, SAMPLED, seed=3, guide=guide[..., :8])
    assert torch.equal(short[:, :2, :8], guide[:, :, :8].expand(2, -1, -1))
    assert not torch.equal(short[:, :2, 8:], guide[:, :, 8:].expand(2, -1, -1))
    prompt = free[..., :5]
    continued = generate_codes(model, ids, mask, 20, SAMPLED, seed=3, guide=guide, prompt=prompt)
    assert torch.equal(continued[..., :5], prompt) and torch.equal(
        continued[:, :2, 5:], guide[:, :, 5:].expand(2, -1, -1)
    )


def test_the_guide_slides_with_the_windows_past_max_frames():
    model = tiny_lm(note_features=48)
    ids, mask = text_batch()
    guide = torch.randint(0, 32, (2, 1, 60), generator=torch.Generator().manual_seed(1))
    long = generate_codes(model, ids, mask, 60, SamplingParams(temperature=0, cfg=1.0), stride=12, guide=guide)
    assert long.shape == (2, 4, 60) and torch.equal(long[:, :1], guide)


@pytest.mark.parametrize("shape,high", [((1, 5, 20), 32), ((3, 2, 20), 32), ((2, 20), 32), ((1, 2, 20), 40)], ids=str)
def test_a_guide_that_does_not_fit_is_one_clear_error(shape, high):
    model = tiny_lm(note_features=48)
    ids, mask = text_batch()
    guide = torch.randint(high - 1, high, shape)
    with pytest.raises(MusicLMError, match="guide codes"):
        generate_codes(model, ids, mask, 20, SAMPLED, guide=guide)


# ---- arrangement and render -------------------------------------------------------------------------
def test_arrange_gives_the_pitched_tracks_the_programs_in_turn_and_keeps_drums():
    score = chord()
    for program in (5, 9):
        score.tracks.append(chord(program=program).tracks[0])
    score.tracks.append(chord((36,), drums=True).tracks[0])
    out = arrange(score, (40, 42))
    assert [t.program for t in out.tracks] == [40, 42, 40, 0] and out.tracks[3].is_drum
    assert [t.program for t in score.tracks] == [0, 5, 9, 0]  # a copy: the user's score is untouched
    assert [t.program for t in arrange(score, ()).tracks] == [0, 5, 9, 0]


@needs_fluidsynth
def test_a_chord_renders_at_the_corpus_level_with_its_pitch_classes():
    sr = 16000
    audio = render_notes(chord((60, 64, 67), seconds=1.0), 1.5, sr)
    assert audio.shape == (int(1.5 * sr),) and audio.dtype == np.float32
    rms_db = 20 * np.log10(np.sqrt(np.mean(audio**2)))
    assert abs(rms_db - GUIDE_RMS_DB) < 1.0 and np.abs(audio).max() < 1.0
    chroma = chroma_features(torch.from_numpy(audio)[None], sr, 50.0)[:40]  # [T, 12] one-hot, while it sounds
    heard = set(np.flatnonzero(chroma.sum(0).numpy() > 4))
    assert heard and heard <= {0, 4, 7}  # the strongest pitch class is always one of C, E, G
    silent = render_notes(Score(480), 1.0, sr)  # a plan that rests: silence, not boosted noise
    assert np.abs(silent).max() < 1e-3


@needs_fluidsynth
def test_guide_codes_are_the_codecs_coarse_codes_of_the_render(tiny_codec):
    scores = [chord((60, 64, 67)), chord((57, 60, 64), program=40)]
    guide = guide_codes(tiny_codec, scores, 0.5, 2)
    assert guide.shape == (2, 2, 500)  # hop 8 at 8 kHz: 1000 frames/s
    wav = torch.from_numpy(render_notes(scores[1], 0.5, 8000))[None, None]
    assert torch.equal(guide[1], tiny_codec.encode(wav, n_q=2)[0])
    assert not torch.equal(guide[0], guide[1])


# ---- the command line -------------------------------------------------------------------------------
@needs_fluidsynth
def test_generate_keeps_the_guide_by_default_and_guide_0_turns_it_off(notes_model, tmp_path):  # noqa: F811
    melody = tune(tmp_path / "tune.mid")
    default, one, off = tmp_path / "d.wav", tmp_path / "one.wav", tmp_path / "off.wav"
    assert run(notes_model, "a string quartet", "-o", str(default), "--melody", str(melody)) == 0
    assert run(notes_model, "a string quartet", "-o", str(one), "--melody", str(melody), "--guide", "1") == 0
    assert run(notes_model, "a string quartet", "-o", str(off), "--melody", str(melody), "--guide", "0") == 0
    audio = [sf.read(p)[0] for p in (default, one, off)]
    assert not np.array_equal(audio[0], audio[2]) and not np.array_equal(audio[1], audio[2])
    assert not np.array_equal(audio[0], audio[1])


@pytest.mark.parametrize(
    "args,message",
    [
        (["--guide", "9"], "writes 4 codebooks"),
        (["--guide", "-1"], "guide must be"),
        (["--guide", "1", "--no-plan"], "no notes to render"),
    ],
)
def test_a_guide_that_cannot_be_made_is_one_line(notes_model, tmp_path, capsys, args, message):  # noqa: F811
    assert run(notes_model, "calm piano in C major", "-o", str(tmp_path / "x.wav"), *args) == 2
    assert message in one_line_error(capsys)
    assert not (tmp_path / "x.wav").exists()


def test_an_audio_melody_has_nothing_to_render(notes_model, tmp_path, capsys):  # noqa: F811
    t = np.arange(8000) / 8000
    sf.write(tmp_path / "hum.wav", 0.3 * np.sin(2 * np.pi * 440 * t), 8000)
    args = ["-o", str(tmp_path / "x.wav"), "--melody", str(tmp_path / "hum.wav"), "--guide", "2"]
    assert run(notes_model, "calm piano", *args) == 2
    assert "audio --melody has no notes to render" in one_line_error(capsys)


def test_a_midi_melodys_features_name_the_instruments_the_prompt_arranges_it_for(notes_model, tmp_path):  # noqa: F811
    from musiclm.generate import GenerationOptions, note_condition
    from musiclm.lm.model import MusicLM
    from musiclm.notes.features import FAMILIES, PITCH_CLASSES

    model = MusicLM.from_pretrained(notes_model)
    melody = tune(tmp_path / "tune.mid")  # a piano line: C E G C, half a second each
    options = GenerationOptions(duration=1.0, seed=0, guide=0)
    notes = note_condition(model, ["a string quartet", "calm piano"], options, melody=melody, want_midi=True)
    strings, piano = notes.features[0], notes.features[1]
    # the same notes for both prompts, C then E in the first second
    assert torch.equal(strings[:, PITCH_CLASSES], piano[:, PITCH_CLASSES])
    assert strings[0, 0] == 1 and strings[-1, 4] == 1
    # GM family 5 (strings, programs 40-47) for the quartet, family 0 (piano) for the piano
    assert strings[:, FAMILIES][:, 5].all() and not strings[:, FAMILIES][:, 0].any()
    assert piano[:, FAMILIES][:, 0].all() and not piano[:, FAMILIES][:, 5].any()
    assert [t.program for t in notes.scores[0].tracks] == [40]


def test_the_codec_listener_plays_a_render_as_the_codec_would(tiny_codec):
    """`codec_listener`: a render at any rate → the codec's round trip at the asked codebooks, back at that
    rate and length (how the planner hears a plan before keeping it)."""
    from musiclm.notes.guide import codec_listener

    t = np.arange(12000) / 24000
    render = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    heard = codec_listener(tiny_codec, 2)(render, 24000)
    assert heard.shape == render.shape and heard.dtype == np.float32 and np.isfinite(heard).all()
    native = render[::3].copy()  # the codec's own rate: exactly its round trip
    with torch.inference_mode():
        expected = tiny_codec.decode(tiny_codec.encode(torch.from_numpy(native)[None, None], n_q=2))[0, 0]
    np.testing.assert_allclose(codec_listener(tiny_codec, 2)(native, 8000), expected[: len(native)].numpy(), atol=1e-6)
    assert not np.allclose(codec_listener(tiny_codec, 1)(native, 8000), expected[: len(native)].numpy(), atol=1e-4)
    with pytest.raises(MusicLMError, match="codebooks"):
        codec_listener(tiny_codec, tiny_codec.config.n_q + 1)


def test_the_planner_listens_at_the_guides_codebooks(notes_model, monkeypatch):  # noqa: F811
    """`generate.plan_listener`: the planner hears a render through the codec at the guide's codebooks (the
    part of the output the render fixes), at every codebook the LM writes when there is no guide."""
    import musiclm.notes.guide as guide_module
    from musiclm.generate import default_guide_count, plan_listener
    from musiclm.lm.model import MusicLM

    model = MusicLM.from_pretrained(notes_model).eval()
    asked = []
    monkeypatch.setattr(guide_module, "codec_listener", lambda codec, codebooks: asked.append(codebooks))
    for guide in (None, 0, 1, model.n_q):
        plan_listener(model, guide)
    assert asked == [default_guide_count(model), model.n_q, 1, model.n_q]
    assert 1 <= default_guide_count(model) < model.n_q
