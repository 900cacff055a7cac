"""The compressor's commands on many files and on damaged ones: batches with one model load, `decompress
--recover`, `info` verifying chunks."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from test_compress import assert_one_line_error, cli, music_like, tiny_codec

from musiclm.codec import bitstream
from musiclm.codec.model import Codec
from musiclm.compress import compress, decompress


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("codec"))


def count_loads(monkeypatch) -> list:
    loads = []
    load = Codec.from_pretrained.__func__

    def counted(cls, *args, **kwargs):
        loads.append(args)
        return load(cls, *args, **kwargs)

    monkeypatch.setattr(Codec, "from_pretrained", classmethod(counted))
    return loads


# ---- many files, one model load ------------------------------------------------------------------------
def test_compress_and_decompress_many_files_load_the_codec_once(capsys, tmp_path, codec_dir, monkeypatch):
    sf.write(tmp_path / "a.wav", music_like(0.5, 24000, 1), 24000)
    sf.write(tmp_path / "b.flac", music_like(0.7, 44100, 2), 44100)
    sf.write(tmp_path / "c.ogg", music_like(0.4, 22050, 1), 22050, format="OGG")
    loads = count_loads(monkeypatch)
    inputs = [tmp_path / n for n in ("a.wav", "b.flac", "c.ogg")]
    rc, err = cli(capsys, "compress", *inputs, "--out-dir", tmp_path / "mlc", "--codec", codec_dir)
    assert rc == 0 and len(loads) == 1, err
    assert sorted(p.name for p in (tmp_path / "mlc").iterdir()) == ["a.mlc", "b.mlc", "c.mlc"]
    mlcs = sorted((tmp_path / "mlc").iterdir())
    rc, err = cli(capsys, "decompress", *mlcs, "-o", tmp_path / "out", "--format", "flac", "--codec", codec_dir)
    assert rc == 0 and len(loads) == 2, err
    info = sf.info(str(tmp_path / "out" / "b.flac"))
    assert (info.samplerate, info.channels, info.frames, info.format) == (
        44100,
        2,
        len(music_like(0.7, 44100, 2)),
        "FLAC",
    )


def test_a_bad_file_in_a_batch_is_one_line_and_the_rest_still_done(capsys, tmp_path, codec_dir):
    sf.write(tmp_path / "a.wav", music_like(0.5, 24000, 1), 24000)
    (tmp_path / "b.wav").write_bytes(b"RIFF junk")
    sf.write(tmp_path / "c.wav", music_like(0.5, 24000, 1), 24000)
    wavs = [tmp_path / n for n in ("a.wav", "b.wav", "c.wav")]
    rc, err = cli(capsys, "compress", *wavs, "-o", tmp_path / "o", "--codec", codec_dir, "-q")
    assert rc == 2 and err.count("\n") == 2 and "b.wav: unreadable audio" in err and "1 of 3 files failed" in err
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["a.mlc", "c.mlc"]


@pytest.mark.parametrize(
    "argv, pattern",
    [
        (["a.wav", "b.wav", "c.mlc"], "several inputs with --out-dir"),
        (["a.wav", "sub/a.flac", "--out-dir", "o"], "would both be written to"),
        (["a.wav", "-", "--out-dir", "o"], "cannot be combined with --out-dir"),
    ],
)
def test_batch_mistakes_are_refused_before_any_work(capsys, tmp_path, codec_dir, argv, pattern, monkeypatch):
    monkeypatch.chdir(tmp_path)
    loads = count_loads(monkeypatch)
    rc, err = cli(capsys, "compress", *argv, "--codec", codec_dir)
    assert_one_line_error(rc, err, pattern)
    assert loads == []


# ---- damaged files: info verifies, decompress --recover keeps the good chunks --------------------------
def chunk_spans(data: bytes) -> list[tuple[int, int]]:
    """(start, end) byte offsets of each chunk of an intact .mlc file."""
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    pos, spans = f.tell(), []
    for i in range(header.num_chunks):
        _, size, head = bitstream._parse_chunk_head(data, pos, header.version)  # mode, payload size (varint)
        levels = header.streams * header.level_blocks(header.chunk_length(i))  # before the codes
        spans.append((pos, pos + head + levels + size + 4))
        pos = spans[-1][1]
    assert pos == len(data), "not an intact file"
    return spans


@pytest.fixture(params=[False, None], ids=["packed", "default-range-coded"])
def mlc(request, tmp_path, codec_dir) -> Path:
    """1.6 s at the codec's rate, four chunks of 0.4 s (30 frames at 75 Hz); bit-packed, or as compress writes
    by default (range-coded where smaller: a damaged chunk's length is then not trusted, and recovery searches
    for the next chunk)."""
    sf.write(tmp_path / "in.wav", music_like(1.6, 24000, 2), 24000)
    compress(tmp_path / "in.wav", tmp_path / "x.mlc", codec=codec_dir, chunk_seconds=0.4, entropy=request.param)
    return tmp_path / "x.mlc"


def damaged(mlc: Path, how: str) -> Path:
    data = bytearray(mlc.read_bytes())
    spans = chunk_spans(bytes(data))
    assert len(spans) == 4
    if how == "flip":  # one bit in chunk 2's payload
        data[spans[1][0] + 20] ^= 0x04
    elif how == "length":  # chunk 2's length field garbled: a bit-packed chunk's size is known
        data[spans[1][0] + 2] ^= 0x40
    elif how == "cut":  # the file ends inside chunk 3
        data = data[: spans[2][0] + 30]
    out = mlc.with_name(f"{how}.mlc")
    out.write_bytes(bytes(data))
    return out


def main_out(capsys, *argv) -> str:
    from musiclm.cli import main

    assert main(list(map(str, argv))) == 0
    return capsys.readouterr().out


def test_info_verifies_chunks(capsys, mlc):
    assert "4 chunks: verified (lengths and checksums intact)" in main_out(capsys, "info", mlc)
    for how, problem in [("flip", "chunk 2/4 fails its checksum"), ("cut", "truncated"), ("length", "chunk 2/4")]:
        bad = damaged(mlc, how)
        rc, err = cli(capsys, "info", bad)
        assert_one_line_error(rc, err, problem)
        assert str(bad) in err
        assert main_out(capsys, "info", bad, "--no-verify").endswith("not verified\n")


@pytest.mark.parametrize("how, silent", [("flip", [1]), ("length", [1]), ("cut", [2, 3])])
def test_recover_makes_damaged_chunks_silent_and_names_them(capsys, tmp_path, codec_dir, mlc, how, silent):
    decompress(mlc, tmp_path / "good.wav", codec=codec_dir)
    good, _ = sf.read(tmp_path / "good.wav")
    bad = damaged(mlc, how)
    rc, err = cli(capsys, "decompress", bad, tmp_path / "plain.wav", "--codec", codec_dir)
    assert rc == 2 and not (tmp_path / "plain.wav").exists()  # without --recover: refused
    rc, err = cli(capsys, "decompress", bad, tmp_path / "back.wav", "--codec", codec_dir, "--recover")
    assert rc == 1, err
    lines = err.splitlines()
    assert [line.split("chunk ")[1][:3] for line in lines[:-1]] == [f"{i + 1}/4" for i in silent], err
    assert f"({silent[0] * 0.4:.2f}-{silent[0] * 0.4 + 0.4:.2f} s)" in lines[0] and "written with" in lines[-1]
    back, sr = sf.read(tmp_path / "back.wav")
    assert back.shape == good.shape and sr == 24000
    hop = 9600  # samples per chunk: 0.4 s at 24 kHz, the input's rate
    margin = 2400  # the decoder's context reaches across chunk borders
    for i in range(4):
        part = slice(i * hop + margin, (i + 1) * hop - margin)
        if i in silent:
            assert not back[i * hop : (i + 1) * hop].any()
        else:
            assert np.abs(back[part] - good[part]).max() < 1e-3, i


@pytest.mark.parametrize(
    "garbled, silent",
    [
        ([(1, 1, 0x40)], [1]),  # chunk 2's length wrong: chunk 3 is found by searching for a valid chunk
        ([(1, 20, 0x04)], [1]),  # a flipped payload bit: the CRC fails, and the length is not trusted either
        # two lengths lost in a row (each varint's end moved): the chunk found is the 4th, as one chunk chains
        # from it to the file's end
        ([(1, 1, 0x80), (2, 1, 0x80)], [1, 2]),
        # the chunks after the one found do not chain to the end (the 4th is damaged): it is taken as the 3rd
        ([(1, 1, 0x80), (3, 20, 0x04)], [1, 3]),
    ],
)
def test_recover_on_a_range_coded_file_finds_the_next_chunk(capsys, tmp_path, codec_dir, garbled, silent):
    sf.write(tmp_path / "in.wav", music_like(1.6, 24000, 1), 24000)
    compress(tmp_path / "in.wav", tmp_path / "e.mlc", codec=codec_dir, chunk_seconds=0.4, entropy=True)
    decompress(tmp_path / "e.mlc", tmp_path / "good.wav", codec=codec_dir)
    good, _ = sf.read(tmp_path / "good.wav")
    data = bytearray((tmp_path / "e.mlc").read_bytes())
    spans = chunk_spans(bytes(data))
    if data[spans[1][0]] != bitstream.MODE_RANGE:
        pytest.skip("the tiny codec's chunk did not range-code smaller")
    for chunk, offset, bit in garbled:
        data[spans[chunk][0] + offset] ^= bit
    (tmp_path / "bad.mlc").write_bytes(bytes(data))
    rc, err = cli(capsys, "decompress", tmp_path / "bad.mlc", tmp_path / "o.wav", "--codec", codec_dir, "--recover")
    assert rc == 1 and err.count("warning: chunk ") == len(silent), err
    assert "cannot be read past" not in err, err
    back, _ = sf.read(tmp_path / "o.wav")
    assert back.shape == good.shape
    hop, margin = 9600, 2400
    for i in range(4):
        if i in silent:
            assert not back[i * hop : (i + 1) * hop].any()
        else:
            part = slice(i * hop + margin, (i + 1) * hop - margin)
            assert np.abs(back[part] - good[part]).max() < 1e-3, i


def test_recover_of_a_file_cut_short_reports_the_rest_once_and_decodes_none_of_it(capsys, tmp_path, codec_dir):
    """A file that ends early keeps its length (silence after the cut), in one warning for all the chunks it
    lacks, and the decoder network never runs on what is not there (a forged or cut header may declare hours)."""
    from musiclm.compress import decompress_bytes, load_codec

    sf.write(tmp_path / "in.wav", music_like(4.0, 24000, 1), 24000)
    compress(tmp_path / "in.wav", tmp_path / "x.mlc", codec=codec_dir, chunk_seconds=0.4)  # 10 chunks
    data = (tmp_path / "x.mlc").read_bytes()
    cut = data[: chunk_spans(data)[2][0] + 3]  # ends inside chunk 3
    (tmp_path / "cut.mlc").write_bytes(cut)
    rc, err = cli(capsys, "decompress", tmp_path / "cut.mlc", tmp_path / "o.wav", "--codec", codec_dir, "--recover")
    warnings = [line for line in err.splitlines() if line.startswith("musiclm: warning: ")]
    assert rc == 1 and len(warnings) == 2, err
    assert "chunk 3/10" in warnings[0] and "chunks 4-10/10 (1.20-4.00 s) missing" in warnings[1], err
    back, _ = sf.read(tmp_path / "o.wav")
    assert len(back) == 4 * 24000 and not back[int(0.8 * 24000) :].any() and back[: int(0.7 * 24000)].any()
    codec = load_codec(codec_dir)
    calls = []
    decode = codec.decode
    codec.decode = lambda *a, **k: calls.append(1) or decode(*a, **k)
    decompress_bytes(cut, codec, on_damage=lambda d: None)
    assert len(calls) == 3  # chunks 1-2, and 3 (silenced, but the context of chunk 2 reads ahead)


def test_cli_range_codes_by_default_and_no_entropy_bit_packs(capsys, tmp_path, codec_dir):
    sf.write(tmp_path / "in.wav", music_like(1.0, 24000, 1), 24000)
    for flag, expected in [((), True), (("--no-entropy",), False), (("--entropy",), True)]:
        out = tmp_path / f"{len(flag)}{''.join(flag)}.mlc"
        rc, err = cli(capsys, "compress", tmp_path / "in.wav", out, "--codec", codec_dir, *flag)
        assert rc == 0, err
        assert bitstream.read_header(io.BytesIO(out.read_bytes())).entropy == expected
