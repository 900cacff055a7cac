"""The synthesized corpus: deterministic, resumable after an interruption, split by piece, captioned."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import soundfile as sf

from musiclm.data import synth
from musiclm.data.captions import parse_controls
from musiclm.data.manifest import FIELD_KEYS, read_manifest, resolve_path
from musiclm.errors import MusicLMError

pytestmark = pytest.mark.skipif(
    shutil.which("fluidsynth") is None or not Path(synth.DEFAULT_SOUNDFONT).is_file(),
    reason="needs fluidsynth and fluid-soundfont-gm (make system-deps)",
)


def short_jobs(seed: int, limit: int = 10, only_split: str | None = None):
    """Four short chorales/tunes instead of the whole corpus, so a test renders in seconds."""
    from music21 import corpus

    works = [
        ("bach", "bach/bwv269.mxl"),
        ("fiddle", "ryansMammoth/MountainReel.abc"),
        ("bach", "bach/bwv281.mxl"),
        ("fiddle", "ryansMammoth/DefianceHornpipe.abc"),
    ]
    for i, (source, name) in enumerate(works[:limit]):
        yield i, source, str(corpus.getWork(name))


def config(out: Path, minutes: float) -> synth.SynthConfig:
    return synth.SynthConfig(
        out=str(out), minutes=minutes, seed=3, workers=2, max_clips_per_job=1, min_clip=4.0, max_clip=6.0
    )


@pytest.mark.slow
def test_interrupted_run_resumes_to_the_same_corpus(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "job_list", short_jobs)
    fresh = synth.build_corpus(config(tmp_path / "fresh", 0.25), progress=False)
    assert fresh["minutes"] >= 0.25 and fresh["rendered_jobs"] >= 3

    # "kill" after one job: only finished jobs leave a record, and the manifest is valid at that point
    partial = synth.build_corpus(config(tmp_path / "resumed", 0.25), progress=False, max_jobs=1)
    assert partial["rendered_jobs"] == 1
    rows = read_manifest(tmp_path / "resumed" / "manifest.jsonl")
    assert rows and all(resolve_path(tmp_path / "resumed" / "manifest.jsonl", r).is_file() for r in rows)
    (tmp_path / "resumed" / "jobs" / ".000001.json.tmp.part").write_text("{half a file")  # a killed write

    resumed = synth.build_corpus(config(tmp_path / "resumed", 0.25), progress=False)
    assert resumed["rendered_jobs"] == fresh["rendered_jobs"] - 1  # job 0 was not rendered again
    a = read_manifest(tmp_path / "fresh" / "manifest.jsonl")
    b = read_manifest(tmp_path / "resumed" / "manifest.jsonl")
    assert a == b
    for row in a:  # same seed → the same audio, byte for byte
        x, _ = sf.read(str(resolve_path(tmp_path / "fresh" / "manifest.jsonl", row)))
        y, _ = sf.read(str(resolve_path(tmp_path / "resumed" / "manifest.jsonl", row)))
        assert (x == y).all()

    with pytest.raises(MusicLMError, match="other settings"):
        cfg = config(tmp_path / "resumed", 0.25)
        cfg.seed = 4
        synth.build_corpus(cfg, progress=False)


@pytest.mark.slow
def test_clips_are_captioned_from_their_fields(tmp_path, monkeypatch):
    monkeypatch.setattr(synth, "job_list", short_jobs)
    cfg = config(tmp_path, 0.2)
    cfg.workers = 1
    synth.build_corpus(cfg, progress=False)
    rows = read_manifest(tmp_path / "manifest.jsonl")
    assert rows
    for row in rows:
        assert set(FIELD_KEYS) <= set(row["fields"]) and row["source"] == "synth"
        info = sf.info(str(resolve_path(tmp_path / "manifest.jsonl", row)))
        assert info.samplerate == row["sample_rate"] == 24000 and info.channels == row["channels"] == 1
        assert abs(info.duration - row["duration"]) < 1e-3 and 3.0 <= row["duration"] <= 6.0
        stated = parse_controls(row["caption"])
        for key in ("key", "mode", "meter"):
            if key in stated:
                assert stated[key] == row["fields"][key], row["caption"]
        if "bpm" in stated:
            assert stated["bpm"] == round(row["fields"]["bpm"])
    jobs = sorted((tmp_path / "jobs").glob("*.json"))
    assert all(json.loads(j.read_text())["error"] is None for j in jobs)


def test_abc_books_split_into_tunes(tmp_path):
    book = tmp_path / "book.abc"
    book.write_text("%abc-2.1\nX:1\nT:One\nK:G\nGABc|\n\nX:2\nT:Two\nK:D\nDEFG|\n")
    tunes = synth.abc_tunes(str(book))
    assert len(tunes) == 2 and "T:Two" in tunes[1] and tunes[1].startswith("%abc-2.1")


def test_missing_soundfont_is_a_clear_error(tmp_path):
    with pytest.raises(MusicLMError, match="soundfont"):
        synth.check_renderer(str(tmp_path / "none.sf2"))
