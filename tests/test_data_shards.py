"""Token shards: codes round-trip exactly, runs resume, shards refuse another codec."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclm.audio import load_audio
from musiclm.data.manifest import write_manifest
from musiclm.data.shards import TokenShards, tokenize_manifest
from musiclm.errors import MusicLMError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def corpus(tmp_path):
    """Five clips at 16 kHz stereo (the tiny codec is 8 kHz mono: load_audio must convert), one corrupt."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(5):
        path = tmp_path / "audio" / f"c{i}.wav"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, (rng.standard_normal((8000 + 1111 * i, 2)) * 0.2).astype(np.float32), 16000)
        rows.append(
            {
                "id": f"c{i}",
                "path": f"audio/c{i}.wav",
                "duration": (8000 + 1111 * i) / 16000,
                "sample_rate": 16000,
                "channels": 2,
                "piece": f"p{i}",
                "split": "valid" if i == 4 else "train",
                "caption": f"clip {i}",
                "fields": {"bpm": 100.0 + i},
                "source": "synth",
            }
        )
    (tmp_path / "audio" / "bad.wav").write_bytes(b"RIFF0000WAVEjunk")
    rows.append(dict(rows[0], id="bad", path="audio/bad.wav"))
    write_manifest(tmp_path / "manifest.jsonl", rows)
    return tmp_path / "manifest.jsonl"


def test_shards_round_trip_and_resume(corpus, tiny_codec, tmp_path):
    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    fresh = tokenize_manifest(corpus, codec_dir, tmp_path / "fresh", progress=False, shard_frames=1000)
    assert fresh["clips"] == 5 and fresh["skipped"] == 1 and "bad" in fresh["skipped_reasons"][0]

    # interrupted after two clips, then resumed: the same codes for every clip
    part = tokenize_manifest(corpus, codec_dir, tmp_path / "resumed", progress=False, max_clips=2)
    assert part["clips"] == 2
    resumed = tokenize_manifest(corpus, codec_dir, tmp_path / "resumed", progress=False)
    assert resumed["encoded_now"] == 3 and resumed["clips"] == 5

    a, b = TokenShards(tmp_path / "fresh"), TokenShards(tmp_path / "resumed")
    assert len(a) == len(b) == 5
    assert len({r["shard"] for r in a.rows}) > 1  # shard_frames split the fresh run into several files
    assert a.frame_rate == tiny_codec.frame_rate and a.n_q == tiny_codec.n_q and a.card == tiny_codec.card
    for i in range(5):
        item = a[i]
        wav, _ = load_audio(corpus.parent / f"audio/{item['id']}.wav", sample_rate=8000, channels=1)
        expected = tiny_codec.encode(wav[None])[0]  # [K, T]
        assert item["codes"].dtype == torch.int64 and torch.equal(item["codes"], expected)
        assert torch.equal(b[[r["id"] for r in b.rows].index(item["id"])]["codes"], expected)
        assert item["caption"] == f"clip {item['id'][1]}" and item["fields"]["bpm"] == 100.0 + int(item["id"][1])
    assert [x["id"] for x in TokenShards(tmp_path / "fresh", split="valid")] == ["c4"]


def test_shards_refuse_another_codec(corpus, tiny_codec, tmp_path):
    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    tokenize_manifest(corpus, codec_dir, tmp_path / "shards", progress=False, max_clips=1)
    shards = TokenShards(tmp_path / "shards")
    shards.check_codec(tiny_codec)
    torch.manual_seed(1)
    other = type(tiny_codec)(tiny_codec.config)
    with pytest.raises(MusicLMError, match="made with codec"):
        shards.check_codec(other)
    with pytest.raises(MusicLMError, match="made with codec"):
        TokenShards(tmp_path / "shards", expect_fingerprint="0123456789abcdef")
    other_dir = other.save_pretrained(tmp_path / "other")
    with pytest.raises(MusicLMError, match="another codec"):
        tokenize_manifest(corpus, other_dir, tmp_path / "shards", progress=False)
    meta = json.loads((tmp_path / "shards" / "meta.json").read_text())
    meta["version"] = 99
    (tmp_path / "shards" / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLMError, match="unsupported shard format"):
        TokenShards(tmp_path / "shards")
