"""Audio into the compressor: files cut short are refused (not padded with silence), a WAV on stdin is
streamed in blocks, other formats on stdin are spooled to a temporary file."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_compress import assert_one_line_error, cli, music_like, tiny_codec

from musiclm.compress import reader
from musiclm.compress.reader import BLOCK_SAMPLES, WavStreamSource, open_stdin, parse_wav_header
from musiclm.errors import MusicLMError


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("codec"))


def write(path: Path, seconds: float = 4.0, fmt: str | None = None, subtype: str | None = None) -> Path:
    sf.write(path, music_like(seconds, 44100, 2), 44100, format=fmt, subtype=subtype)
    return path


def cut(path: Path, fraction: float = 0.5) -> Path:
    data = path.read_bytes()
    half = path.with_name("half_" + path.name)
    half.write_bytes(data[: int(len(data) * fraction)])
    return half


@pytest.mark.parametrize(
    "name, fmt, pattern",
    [
        ("a.mp3", "MP3", "truncated or damaged audio"),  # the Xing header counts the whole file's samples
        ("a.ogg", "OGG", "truncated Ogg stream"),  # no end-of-stream page
        ("a.flac", "FLAC", "truncated or damaged audio"),
        ("a.wav", "WAV", "truncated WAV"),
    ],
)
def test_a_file_cut_in_half_is_refused(capsys, tmp_path, codec_dir, name, fmt, pattern):
    if fmt not in sf.available_formats():
        pytest.skip(f"this libsndfile cannot write {fmt}")
    whole = write(tmp_path / name, fmt=fmt)
    rc, err = cli(capsys, "compress", whole, tmp_path / "whole.mlc", "--codec", codec_dir, "-q")
    assert rc == 0, err  # the complete file is fine
    rc, err = cli(capsys, "compress", cut(whole), tmp_path / "half.mlc", "--codec", codec_dir)
    assert_one_line_error(rc, err, pattern)
    assert not (tmp_path / "half.mlc").exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


@pytest.mark.parametrize(
    "subtype",
    ["PCM_U8", "PCM_16", "PCM_24", "PCM_32", "FLOAT", "DOUBLE"],
)
@pytest.mark.parametrize("fmt", ["WAV", "WAVEX"])
def test_wav_stream_reader_matches_libsndfile(fmt, subtype):
    if fmt == "WAVEX" and subtype == "PCM_U8":
        pytest.skip("libsndfile writes 8-bit WAVEX as signed")
    buf = io.BytesIO()
    x = music_like(0.3, 22050, 3)
    sf.write(buf, x, 22050, format=fmt, subtype=subtype)
    data = buf.getvalue()
    ref = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)[0].T
    stream = io.BytesIO(data)
    layout = parse_wav_header(stream.read, "<test>")
    assert layout is not None and (layout.channels, layout.sample_rate) == (3, 22050)
    src = WavStreamSource(layout, stream.read, "<test>")
    got = np.concatenate(list(src.blocks()), axis=-1)
    assert got.shape == ref.shape and np.allclose(got, ref, atol=1e-7, rtol=0)


class FakeStdin:
    """Stands for sys.stdin.buffer: serves `data`, remembering the largest read."""

    def __init__(self, data: bytes):
        self.f, self.largest = io.BytesIO(data), 0

    def __call__(self, n: int) -> bytes:
        self.largest = max(self.largest, n)
        return self.f.read(n)


def test_wav_on_stdin_is_streamed_in_blocks(monkeypatch):
    buf = io.BytesIO()
    sf.write(buf, music_like(10.0, 44100, 2), 44100, format="WAV")
    stdin = FakeStdin(buf.getvalue())
    monkeypatch.setattr(reader, "read_stdin", stdin)
    src = open_stdin()
    assert isinstance(src, WavStreamSource) and src.frames == 441000
    assert sum(b.shape[1] for b in src.blocks()) == 441000
    assert stdin.largest <= BLOCK_SAMPLES * 4  # one block at a time, never the whole 1.7 MB


def test_other_formats_on_stdin_are_spooled_to_a_temporary_file(monkeypatch):
    buf = io.BytesIO()
    sf.write(buf, music_like(3.0, 44100, 1), 44100, format="FLAC")
    stdin = FakeStdin(buf.getvalue())
    monkeypatch.setattr(reader, "read_stdin", stdin)
    src = open_stdin()
    assert src.frames == 132300 and src.owned is not None and stdin.largest <= reader.SPOOL_BYTES
    assert sum(b.shape[1] for b in src.blocks()) == 132300
    src.close()
    assert src.owned.closed


def test_a_wav_cut_short_on_stdin_is_refused(monkeypatch):
    buf = io.BytesIO()
    sf.write(buf, music_like(3.0, 44100, 1), 44100, format="WAV")
    monkeypatch.setattr(reader, "read_stdin", FakeStdin(buf.getvalue()[:100_000]))
    src = open_stdin()
    with pytest.raises(MusicLMError, match="truncated or damaged audio: only 1.13 s of the 3.00 s"):
        for _ in src.blocks():
            pass


def test_empty_stdin(monkeypatch):
    monkeypatch.setattr(reader, "read_stdin", FakeStdin(b""))
    with pytest.raises(MusicLMError, match="empty input"):
        open_stdin()
