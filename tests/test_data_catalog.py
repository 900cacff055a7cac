"""Indexing a user's folder: caption sources in order, bad files skipped with reasons, resumable."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf

from musiclm.data import catalog
from musiclm.data.catalog import index_catalog, parse_key_tag
from musiclm.data.manifest import read_manifest, resolve_path
from musiclm.errors import MusicLMError

SR = 16000


def music(seconds: float = 4.0, tonic: int = 62, seed: int = 0) -> np.ndarray:
    """Major chords on `tonic` with a click on every beat at 120 BPM: a key and a tempo to find."""
    t = np.arange(int(SR * seconds)) / SR
    chord = sum(np.sin(2 * np.pi * 440 * 2 ** ((tonic + n - 69) / 12) * t) for n in (0, 4, 7, 12)) * 0.1
    clicks = np.zeros_like(t)
    for k in range(int(seconds * 2)):
        i = int(k * 0.5 * SR)
        clicks[i : i + 200] += np.random.default_rng(seed + k).standard_normal(len(clicks[i : i + 200])) * 0.3
    return (chord * (0.6 + 0.4 * np.cos(2 * np.pi * 2 * t)) + clicks).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "music"
    (root / "sub").mkdir(parents=True)
    sf.write(root / "plain.wav", music(), SR)  # nothing given: analysis
    sf.write(root / "side.flac", music(tonic=60), SR)
    (root / "side.txt").write_text("a calm piano piece for testing\n")
    sf.write(root / "side2.ogg", music(tonic=57), SR, format="OGG", subtype="VORBIS")
    (root / "side2.json").write_text(json.dumps({"caption": "json caption", "bpm": 100, "key": "Am"}))
    sf.write(root / "sub" / "listed.wav", music(tonic=65), SR)
    (root / "sub" / "captions.csv").write_text("file,caption,genre\nlisted.wav,csv caption,jazz\n")
    sf.write(root / "sub" / "jsonl.wav", music(tonic=67), SR)
    (root / "metadata.jsonl").write_text(json.dumps({"file_name": "sub/jsonl.wav", "text": "jsonl caption"}) + "\n")
    # an mp3 with ID3 tags: written by libsndfile, tagged by mutagen
    sf.write(root / "tagged.mp3", np.stack([music(tonic=66)] * 2, 1), SR, format="MP3")
    from mutagen.easyid3 import EasyID3
    from mutagen.id3 import ID3, TKEY

    tags = EasyID3()
    tags.update({"title": "Night Drive", "artist": "Tester", "genre": "Synthwave", "bpm": "128"})
    tags.save(str(root / "tagged.mp3"))
    id3 = ID3(str(root / "tagged.mp3"))
    id3.add(TKEY(encoding=3, text="F#m"))
    id3.save()
    # bad files
    (root / "corrupt.flac").write_bytes(b"fLaC" + np.random.default_rng(0).bytes(3000))
    sf.write(root / "silent.wav", np.zeros(SR * 3, dtype=np.float32), SR)
    sf.write(root / "short.wav", music(0.5), SR)
    return root


def test_caption_sources_and_skips(folder, tmp_path):
    out = tmp_path / "manifest.jsonl"
    report = index_catalog(folder, out, progress=False)
    rows = {r["id"]: r for r in read_manifest(out)}
    assert set(rows) == {"plain", "side", "side2", "sub/listed", "sub/jsonl", "tagged"}
    assert {s["path"].split("/")[-1]: s["reason"].split(" ")[0] for s in report["skipped"]} == {
        "corrupt.flac": "unreadable",
        "silent.wav": "silent",
        "short.wav": "too",
    }

    assert rows["side"]["caption"] == "a calm piano piece for testing"
    assert rows["side2"]["caption"] == "json caption"
    assert (rows["side2"]["fields"]["bpm"], rows["side2"]["fields"]["key"], rows["side2"]["fields"]["mode"]) == (
        100.0,
        "A",
        "minor",
    )
    assert rows["sub/listed"]["caption"] == "csv caption" and rows["sub/listed"]["fields"]["genre"] == "jazz"
    assert rows["sub/jsonl"]["caption"] == "jsonl caption"

    tagged = rows["tagged"]
    assert tagged["caption_source"] == "tags" and tagged["caption"].startswith("Night Drive")
    f = tagged["fields"]
    assert (f["bpm"], f["key"], f["mode"], f["genre"], f["artist"]) == (128.0, "F#", "minor", "synthwave", "Tester")
    assert tagged["channels"] == 2

    plain = rows["plain"]  # no metadata at all: measured
    assert plain["caption_source"] == "analysis"
    assert (plain["fields"]["key"], plain["fields"]["mode"]) == ("D", "major")
    assert abs(plain["fields"]["bpm"] - 120) < 3 or abs(plain["fields"]["bpm"] - 60) < 2
    assert "D major" in plain["caption"] or "D" in plain["caption"]
    for row in rows.values():
        assert resolve_path(out, row).is_file() and row["source"] == "catalog"
        assert row["split"] in ("train", "valid", "test") and row["duration"] > 2


class Killed(BaseException):
    """Stands in for Ctrl-C / SIGTERM (pytest reserves KeyboardInterrupt for itself)."""


def test_rerun_resumes_and_reindexes_changed_files(folder, tmp_path, monkeypatch):
    out = tmp_path / "manifest.jsonl"
    calls, armed = [], True
    real = catalog.index_file
    monkeypatch.setattr(catalog, "SAVE_EVERY_SECONDS", 0.0)

    def interrupted(path, *args, **kwargs):
        calls.append(path.name)
        if armed and len(calls) == 3:
            raise Killed  # the run dies on the third file
        return real(path, *args, **kwargs)

    monkeypatch.setattr(catalog, "index_file", interrupted)
    with pytest.raises(Killed):
        index_catalog(folder, out, progress=False)
    assert len(read_manifest(out)) == 1  # corrupt.flac was skipped; plain.wav was saved before Ctrl-C

    calls.clear()
    armed = False
    first = index_catalog(folder, out, progress=False)
    assert first["reused"] == 1 and first["indexed"] == 6 and "plain.wav" not in calls

    calls.clear()
    sf.write(folder / "plain.wav", music(seed=5), SR)  # changed since: indexed again
    second = index_catalog(folder, out, progress=False)
    assert calls == ["plain.wav"] and second["reused"] == 5 and second["skipped_count"] == 3


def test_key_tags_and_errors(tmp_path):
    assert parse_key_tag("Am") == ("A", "minor") and parse_key_tag("Db major") == ("Db", "major")
    assert parse_key_tag("f sharp minor") == ("F#", "minor") and parse_key_tag("8A") is None
    with pytest.raises(MusicLMError, match="no audio"):
        index_catalog(tmp_path, tmp_path / "m.jsonl", progress=False)
    with pytest.raises(MusicLMError, match="not a folder"):
        index_catalog(tmp_path / "missing", tmp_path / "m.jsonl", progress=False)


def test_duplicate_recordings_share_a_piece(tmp_path):
    root = tmp_path / "music"
    for i, lang in enumerate(("en", "fr", "it")):
        (root / lang).mkdir(parents=True)
        sf.write(root / lang / "track1.wav", music(seed=1), SR)
        # Other pieces: another key and other clicks (seeds 8 apart share no click), not a copy of anything.
        sf.write(root / lang / f"only_{lang}.wav", music(tonic=55 + 3 * i, seed=100 + 8 * i), SR)
    index_catalog(root, tmp_path / "m.jsonl", progress=False)
    rows = read_manifest(tmp_path / "m.jsonl")
    copies = [r for r in rows if r["id"].endswith("track1")]
    assert len(copies) == 3 and {r["piece"] for r in copies} == {"en/track1"}
    assert len({r["split"] for r in copies}) == 1
    assert len({r["piece"] for r in rows}) == 4
