"""The synth corpus keeps each clip's MIDI, aligned with its audio; a corpus rendered before that gains it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.data import synth
from musiclm.data.manifest import read_manifest, resolve_path
from musiclm.notes.features import chroma_features, piano_roll_features
from musiclm.notes.midi import load_midi, note_array

pytestmark = [
    pytest.mark.skipif(
        shutil.which("fluidsynth") is None or not Path(synth.DEFAULT_SOUNDFONT).is_file(),
        reason="needs fluidsynth and fluid-soundfont-gm (make system-deps)",
    ),
    pytest.mark.slow,
    pytest.mark.usefixtures("one_thread"),
]


def two_jobs(seed: int, limit: int = 10, only_split: str | None = None):
    from music21 import corpus

    for i, (source, name) in enumerate([("fiddle", "ryansMammoth/MountainReel.abc"), ("bach", "bach/bwv269.mxl")]):
        yield i, source, str(corpus.getWork(name))


def agreement(wav: np.ndarray, sr: int, roll: np.ndarray) -> float:
    """Share of sounding frames whose strongest pitch class is one the MIDI has sounding then."""
    chroma = chroma_features(wav, sr).numpy()
    T = min(len(chroma), len(roll))
    loud = chroma[:T].sum(1) > 0
    hit = (chroma[:T] * roll[:T, :12]).sum(1) > 0
    return float(hit[loud].mean())


def test_each_clip_keeps_its_notes_aligned_to_its_audio(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "job_list", two_jobs)
    cfg = synth.SynthConfig(
        out=str(tmp_path), minutes=0.15, seed=3, workers=1, max_clips_per_job=1, min_clip=6.0, max_clip=8.0
    )
    synth.build_corpus(cfg, progress=False)
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert len(rows) == 2
    for row in rows:
        midi = load_midi(tmp_path / row["midi"])
        assert row["midi"] == row["path"].rsplit(".", 1)[0] + ".mid"
        notes = note_array(midi)
        assert notes[:, 0].min() >= 0 and (notes[:, 0] + notes[:, 1]).max() <= row["duration"] + 0.01
        wav, sr = sf.read(str(resolve_path(tmp_path / "manifest.jsonl", row)), dtype="float32")
        roll = piano_roll_features(midi, 50.0, int(np.ceil(len(wav) / sr * 50))).numpy()
        # the notes line up with the sound: agreement peaks within 0.1 s of no shift (a violin's slow attack
        # puts it one step late), well above the agreement with the notes moved half a second
        by_shift = {k: agreement(wav, sr, np.roll(roll, k, 0)) for k in range(-25, 26, 5)}
        best = max(by_shift, key=by_shift.get)
        assert abs(best) <= 5 and by_shift[0] > 1.5 * max(by_shift[-25], by_shift[25]), (row["id"], by_shift)

    # a corpus rendered before clips kept their MIDI: its jobs are rendered again, the audio comes out the same
    job = tmp_path / "jobs" / "000000.json"
    record = json.loads(job.read_text())
    for row in record["rows"]:
        row.pop("midi")
        (tmp_path / row["path"]).with_suffix(".mid").unlink()
    job.write_text(json.dumps(record))
    audio = {r["id"]: (tmp_path / r["path"]).read_bytes() for r in rows}
    again = synth.build_corpus(cfg, progress=False)
    assert again["rendered_jobs"] == 1
    rows2 = read_manifest(tmp_path / "manifest.jsonl")
    assert [r["id"] for r in rows2] == [r["id"] for r in rows] and all((tmp_path / r["midi"]).is_file() for r in rows2)
    assert {r["id"]: (tmp_path / r["path"]).read_bytes() for r in rows2} == audio
