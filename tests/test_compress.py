"""The compressor end to end with a tiny random codec: round trips, streaming == one-shot, safe CLI errors."""

from __future__ import annotations

import dataclasses
import io
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from musiclm.audio import resample
from musiclm.cli import main
from musiclm.codec import bitstream
from musiclm.codec.model import Codec, CodecConfig
from musiclm.codec.seanet import SEANetConfig
from musiclm.codec.streaming import decode_chunks, encode_chunks, receptive_frames, resampled_blocks
from musiclm.compress import compress, compress_bytes, decompress, decompress_bytes, read_codes, read_info
from musiclm.errors import MusicLMError

pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_codec(seed: int = 0, name: str = "tiny") -> Codec:
    torch.manual_seed(seed)
    cfg = CodecConfig(
        name=name,
        sample_rate=24000,
        seanet=SEANetConfig(n_filters=4, dimension=16),
        n_q=8,
        card=64,
        bandwidths=(0.9, 1.8, 3.6),
    )
    return Codec(cfg).eval()


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("codec"))


@pytest.fixture(scope="module")
def codec(codec_dir) -> Codec:
    return Codec.from_pretrained(codec_dir)


def music_like(seconds: float, sr: int, channels: int, seed: int = 0) -> np.ndarray:
    """[N, C]: a few partials with vibrato plus a little noise, so every frame differs."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    x = sum(0.15 * np.sin(2 * np.pi * f * t + 3 * np.sin(2 * np.pi * 0.5 * t)) for f in (220, 331, 587))
    return np.stack([x * (0.7 + 0.3 * c) + 0.01 * rng.standard_normal(len(t)) for c in range(channels)], 1)


def one_shot(codec: Codec, wav: torch.Tensor, sr: int, bandwidth: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The reference path: whole signal resampled, each channel encoded and decoded at once as a batch
    → (codes [C, K, T], wav [C, N])."""
    x = resample(wav, sr, codec.sample_rate)  # [C, N]
    codes = codec.encode(x[:, None], n_q=codec.config.n_q_for_bandwidth(bandwidth))  # [C, K, T]
    y = codec.decode(codes, x.shape[-1])[:, 0]
    return codes, resample(y, codec.sample_rate, sr)


def without_levels(data: bytes) -> bytes:
    """The same codes as a version-2 file (no level corrections): what musiclm wrote before version 3."""
    header, codes = bitstream.read_mlc(io.BytesIO(data))
    out = io.BytesIO()
    bitstream.write_mlc(out, dataclasses.replace(header, version=2, level_frames=0), codes)
    return out.getvalue()


def test_file_round_trip_restores_rate_channels_length(tmp_path, codec_dir, codec):
    audio = music_like(3.3, 44100, 2)
    sf.write(tmp_path / "in.flac", audio, 44100)
    header = compress(tmp_path / "in.flac", tmp_path / "x.mlc", codec=codec_dir, bandwidth=1.8, chunk_seconds=1)
    assert (header.orig_sample_rate, header.orig_channels, header.orig_num_samples) == (44100, 2, len(audio))
    assert header.fingerprint == codec.fingerprint() and header.n_q == 4 and header.num_chunks == 4
    decompress(tmp_path / "x.mlc", tmp_path / "out.wav", codec=codec_dir)
    info = sf.info(str(tmp_path / "out.wav"))
    assert (info.samplerate, info.channels, info.frames) == (44100, 2, len(audio))
    assert read_info(tmp_path / "x.mlc") == header
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temporary files left


def test_streamed_path_equals_one_shot_path(codec):
    """Codes in the file are the one-shot codes of each channel; decoded audio equals the one-shot decode of
    those codes (float rounding). Level corrections left out (version 2): tests/test_mlc_level.py has them."""
    audio = torch.from_numpy(music_like(4.1, 32000, 2).T.astype(np.float32))
    data = compress_bytes(audio, codec, sample_rate=32000, bandwidth=3.6, chunk_seconds=0.5)
    header, codes = bitstream.read_mlc(io.BytesIO(data))  # [S, K, T]
    ref_codes, _ = one_shot(codec, audio, 32000, 3.6)
    assert header.streams == 2 and codes.shape == tuple(ref_codes.shape)
    assert (torch.from_numpy(codes) != ref_codes).float().mean() < 1e-3  # float ties may flip a rare argmin
    wav, sr = decompress_bytes(without_levels(data), codec)
    assert sr == 32000 and wav.shape == audio.shape
    wav_ref = resample(codec.decode(torch.from_numpy(codes), header.num_samples)[:, 0], 24000, 32000)
    assert torch.allclose(wav, wav_ref, atol=1e-5)


@pytest.mark.parametrize("orig_sr, new_sr", [(44100, 24000), (24000, 44100), (22050, 24000), (48000, 48000)])
def test_streamed_resampling_equals_whole_signal(orig_sr, new_sr):
    x = np.random.default_rng(0).standard_normal((2, 54321)).astype(np.float32)
    blocks = iter([x[:, i : i + 4097] for i in range(0, x.shape[1], 4097)])
    got = np.concatenate(list(resampled_blocks(blocks, orig_sr, new_sr, x.shape[1], 2)), axis=-1)
    assert np.array_equal(got, resample(torch.from_numpy(x), orig_sr, new_sr).numpy())


@pytest.mark.parametrize("channels_in, channels_out", [(1, 3), (2, 1), (2, 6)])
def test_streamed_resampling_mixes_channels_as_the_whole_signal_does(channels_in, channels_out):
    """A mix that changes the channel count is resampled once, as mono, then copied: the same samples as
    mixing first and resampling every channel."""
    from musiclm.audio import convert_channels

    x = np.random.default_rng(1).standard_normal((channels_in, 30001)).astype(np.float32)
    blocks = iter([x[:, i : i + 4097] for i in range(0, x.shape[1], 4097)])
    got = np.concatenate(list(resampled_blocks(blocks, 24000, 44100, x.shape[1], channels_out)), axis=-1)
    mixed = convert_channels(torch.from_numpy(x), channels_out)
    assert got.shape[0] == channels_out and np.array_equal(got, resample(mixed, 24000, 44100).numpy())


def test_chunk_border_error_vanishes_with_enough_context(codec):
    """Overlap-discard: with context ≥ the receptive field, borders are exact; without, they are not."""
    x = torch.from_numpy(music_like(3.0, 24000, 1).T.astype(np.float32))
    N, hop, chunk = x.shape[-1], codec.hop_length, 25
    codes = codec.encode(x[None], n_q=4)[0]
    ref = codec.decode(codes[None], N)[0].numpy()
    border = np.zeros(N, bool)
    for b in range(chunk * hop, N, chunk * hop):
        border[b - 2 * hop : b + 2 * hop] = True
    errors = {}
    for context in (0, receptive_frames(codec)):
        blocks = iter(codes.split(chunk, dim=-1))
        wav = np.concatenate(list(decode_chunks(codec, blocks, N, chunk, context)), axis=-1)
        err = np.abs(wav - ref)
        errors[context] = (err[:, border].max(), err[:, ~border].max())
        enc = torch.cat(list(encode_chunks(codec, iter(x.split(5000, -1)), N, chunk, context, 4)), -1)
        errors[context] += (float((enc != codes).float().mean()),)
    no_ctx, full_ctx = errors[0], errors[receptive_frames(codec)]
    assert no_ctx[0] > 100 * max(no_ctx[1], 1e-7)  # without context the error sits at the borders
    assert full_ctx[0] < 1e-5 and full_ctx[1] < 1e-5 and full_ctx[2] == 0.0


@pytest.mark.parametrize("n, sr, channels", [(1, 44100, 1), (7, 8000, 3), (319, 24000, 2), (12345, 44100, 2)])
def test_odd_lengths_rates_and_channel_counts_come_back_exactly(codec, n, sr, channels):
    x = torch.rand(channels, n) - 0.5
    for entropy in (False, True):
        wav, got_sr = decompress_bytes(
            compress_bytes(x, codec, sample_rate=sr, chunk_seconds=0.05, entropy=entropy), codec
        )
        assert wav.shape == x.shape and got_sr == sr


def test_range_coding_is_the_default_and_keeps_the_same_codes(tmp_path, codec_dir):
    sf.write(tmp_path / "in.wav", music_like(2.0, 24000, 1), 24000)
    compress(tmp_path / "in.wav", tmp_path / "a.mlc", codec=codec_dir, entropy=False)
    compress(tmp_path / "in.wav", tmp_path / "b.mlc", codec=codec_dir)
    ha, a = bitstream.read_mlc(open(tmp_path / "a.mlc", "rb"))
    hb, b = bitstream.read_mlc(open(tmp_path / "b.mlc", "rb"))
    assert not ha.entropy and hb.entropy and np.array_equal(a, b)
    assert (tmp_path / "b.mlc").stat().st_size <= (tmp_path / "a.mlc").stat().st_size


def test_range_coding_is_off_by_default_where_the_coder_cannot_take_the_codebook(monkeypatch, codec):
    import musiclm.codec.entropy as entropy

    audio = torch.from_numpy(music_like(0.5, 24000, 1).T.astype(np.float32))
    monkeypatch.setattr(entropy, "MAX_ENTROPY_CARD", codec.card - 1)
    assert not bitstream.read_header(io.BytesIO(compress_bytes(audio, codec, sample_rate=24000))).entropy
    with pytest.raises(MusicLMError, match="entropy coding supports codebooks"):
        compress_bytes(audio, codec, sample_rate=24000, entropy=True)


def test_entropy_prior_from_training_statistics(tmp_path, codec):
    """A trained codec's code usage starts the range coder; a codec with other statistics is refused."""
    trained = tiny_codec()
    for k, layer in enumerate(trained.quantizer.layers):
        layer.inited.fill_(True)
        layer.cluster_size.copy_(torch.rand(64, generator=torch.Generator().manual_seed(k)) ** 4 * 100)
    assert trained.fingerprint() == codec.fingerprint()  # statistics are not part of the weights' identity
    audio = torch.from_numpy(music_like(2.0, 24000, 1).T.astype(np.float32))
    data = compress_bytes(audio, trained, sample_rate=24000, entropy=True)
    header = bitstream.read_header(io.BytesIO(data))
    assert header.prior
    wav, _ = decompress_bytes(data, trained)
    packed = compress_bytes(audio, trained, sample_rate=24000, entropy=False)
    ref, _ = decompress_bytes(packed, trained)
    assert torch.equal(wav, ref)  # same codes, whatever the coding
    # the codes read without decoding need the codec's statistics too (the codec table of `eval report`)
    assert np.array_equal(read_codes(data, trained)[1], bitstream.read_mlc(io.BytesIO(packed))[1])
    with pytest.raises(MusicLMError, match="code statistics"):
        decompress_bytes(data, codec)


def test_bitrate_on_disk_close_to_nominal(codec):
    audio = torch.from_numpy(music_like(10.0, 24000, 1).T.astype(np.float32))
    for bandwidth in codec.bandwidths:
        kbps = len(compress_bytes(audio, codec, sample_rate=24000, bandwidth=bandwidth, entropy=False)) * 8 / 10 / 1000
        nominal = codec.config.n_q_for_bandwidth(bandwidth) * math.log2(codec.card) * codec.frame_rate / 1000
        assert nominal <= kbps < nominal * 1.05 + 0.1


def test_other_input_formats_and_mono_to_stereo(tmp_path, codec_dir):
    sf.write(tmp_path / "in.ogg", music_like(1.5, 22050, 1), 22050, format="OGG")
    compress(tmp_path / "in.ogg", tmp_path / "x.mlc", codec=codec_dir)
    decompress(tmp_path / "x.mlc", tmp_path / "out.flac", codec=codec_dir)
    info = sf.info(str(tmp_path / "out.flac"))
    assert (info.samplerate, info.channels, info.format) == (22050, 1, "FLAC")


# ---- errors through the CLI: exit 2, one line on stderr, no output left ----------------------------------
def cli(capsys, *argv) -> tuple[int, str]:
    rc = main(list(map(str, argv)))
    err = capsys.readouterr().err
    return rc, err


def assert_one_line_error(rc: int, err: str, pattern: str) -> None:
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("musiclm: error:") and "Traceback" not in err, err
    assert pattern in err, err


@pytest.fixture
def mlc(tmp_path, codec_dir) -> Path:
    sf.write(tmp_path / "in.wav", music_like(1.0, 24000, 1), 24000)
    compress(tmp_path / "in.wav", tmp_path / "x.mlc", codec=codec_dir, chunk_seconds=0.3)
    return tmp_path / "x.mlc"


@pytest.mark.parametrize(
    "damage, pattern",
    [
        (lambda d: d[: len(d) - 7], "truncated"),
        (lambda d: b"OggS" + d[4:], "wrong magic"),
        (lambda d: d[:4] + bytes([bitstream.VERSION + 1, 0]) + d[6:], f"version {bitstream.VERSION + 1}"),
        (lambda d: d[:-20] + bytes([d[-20] ^ 1]) + d[-19:], "checksum"),
        (lambda d: b"", "empty input"),
    ],
)
def test_decompress_bad_file(capsys, tmp_path, codec_dir, mlc, damage, pattern):
    bad = tmp_path / "bad.mlc"
    bad.write_bytes(damage(mlc.read_bytes()))
    rc, err = cli(capsys, "decompress", bad, tmp_path / "out.wav", "--codec", codec_dir)
    assert_one_line_error(rc, err, pattern)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.mlc", "in.wav", "x.mlc"]


def test_decompress_refuses_another_codec(capsys, tmp_path, mlc):
    other = tiny_codec(seed=1).save_pretrained(tmp_path / "other")
    rc, err = cli(capsys, "decompress", mlc, tmp_path / "out.wav", "--codec", other)
    assert_one_line_error(rc, err, "encoded with codec 'tiny'")
    assert not (tmp_path / "out.wav").exists()


def test_compress_bad_inputs(capsys, tmp_path, codec_dir):
    (tmp_path / "junk.wav").write_bytes(b"RIFF\x00\x00junk" * 10)
    sf.write(tmp_path / "empty.wav", np.zeros((0, 1)), 24000)
    for src, pattern in [("junk.wav", "unreadable audio"), ("empty.wav", "empty audio"), ("nope.wav", "no such")]:
        rc, err = cli(capsys, "compress", tmp_path / src, tmp_path / "x.mlc", "--codec", codec_dir)
        assert_one_line_error(rc, err, pattern)
    sf.write(tmp_path / "ok.wav", music_like(0.5, 24000, 1), 24000)
    rc, err = cli(capsys, "compress", tmp_path / "ok.wav", tmp_path / "x.mlc", "-b", "7", "--codec", codec_dir)
    assert_one_line_error(rc, err, "not offered")
    assert not (tmp_path / "x.mlc").exists()


def test_refuses_to_overwrite_without_force(capsys, tmp_path, codec_dir, mlc):
    out = tmp_path / "out.wav"
    out.write_bytes(b"precious")
    rc, err = cli(capsys, "decompress", mlc, out, "--codec", codec_dir)
    assert_one_line_error(rc, err, "--force")
    assert out.read_bytes() == b"precious"
    rc, err = cli(capsys, "compress", tmp_path / "in.wav", mlc, "--codec", codec_dir)
    assert_one_line_error(rc, err, "--force")
    assert cli(capsys, "decompress", mlc, out, "--codec", codec_dir, "--force")[0] == 0
    assert sf.info(str(out)).frames == 24000


@pytest.mark.slow
def test_pipes_and_no_traceback_in_a_real_process(tmp_path, codec_dir):
    """`-` for stdin/stdout in a pipe, and a corrupt file in a real process: one line, exit 2."""
    buf = io.BytesIO()
    sf.write(buf, music_like(1.0, 48000, 2), 48000, format="WAV")
    exe = [sys.executable, "-m", "musiclm.cli"]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "OMP_NUM_THREADS": "1"}
    enc = subprocess.run(
        exe + ["compress", "-", "-", "--codec", str(codec_dir)],
        input=buf.getvalue(),
        capture_output=True,
        env=env,
        timeout=600,  # a busy machine can take minutes to start torch
    )
    assert enc.returncode == 0, enc.stderr.decode()
    dec = subprocess.run(
        exe + ["decompress", "-", "-", "--codec", str(codec_dir)],
        input=enc.stdout,
        capture_output=True,
        env=env,
        timeout=600,  # a busy machine can take minutes to start torch
    )
    assert dec.returncode == 0, dec.stderr.decode()
    info = sf.info(io.BytesIO(dec.stdout))
    assert (info.samplerate, info.channels, info.frames) == (48000, 2, 48000)
    bad = subprocess.run(
        exe + ["decompress", "-", str(tmp_path / "o.wav"), "--codec", str(codec_dir)],
        input=enc.stdout[:-3],
        capture_output=True,
        env=env,
        timeout=600,  # a busy machine can take minutes to start torch
    )
    err = bad.stderr.decode()
    assert bad.returncode == 2 and err.count("\n") == 1 and "truncated" in err, err
    assert not (tmp_path / "o.wav").exists()


def test_musiclm_compress_is_a_plain_function_beside_the_package(tmp_path, codec_dir):
    """`musiclm.compress(...)` works after `import musiclm.compress`, with no module `__class__` swap, and
    takes exactly the parameters of `musiclm.compress.compress`."""
    import inspect
    import types

    import musiclm
    import musiclm.compress

    assert isinstance(musiclm.compress, types.FunctionType)
    assert type(sys.modules["musiclm.compress"]) is types.ModuleType
    sf.write(tmp_path / "in.wav", music_like(0.5, 16000, 1), 16000)
    header = musiclm.compress(tmp_path / "in.wav", tmp_path / "x.mlc", codec=codec_dir)
    assert header.orig_sample_rate == 16000 and (tmp_path / "x.mlc").is_file()

    def params(fn):
        return [(p.name, p.default) for p in inspect.signature(fn).parameters.values()]

    assert params(musiclm.compress) == params(compress)


# ---- channels: each coded on its own (format version 2), version 1 still read ------------------------------
def hard_panned(seconds: float, sr: int) -> np.ndarray:
    """[N, 2]: a tone on the left, silence on the right."""
    t = np.arange(int(seconds * sr)) / sr
    left = 0.5 * np.sin(2 * np.pi * 440 * t) * (0.6 + 0.4 * np.sin(2 * np.pi * 0.7 * t))
    return np.stack([left, np.zeros_like(left)], 1)


def test_hard_panned_stereo_keeps_left_and_right_apart(tmp_path):
    """With the shipped codec: left = tone, right = silence comes back with the right channel silent."""
    sf.write(tmp_path / "pan.wav", hard_panned(2.0, 44100), 44100)
    header = compress(tmp_path / "pan.wav", tmp_path / "pan.mlc", progress=False)
    decompress(tmp_path / "pan.mlc", tmp_path / "back.wav", progress=False)
    back, sr = sf.read(tmp_path / "back.wav")
    energy = (back**2).mean(0)
    assert header.streams == 2 and back.shape == (88200, 2) and sr == 44100
    assert energy[1] < 0.1 * energy[0], energy


def test_channels_are_coded_independently_and_cost_their_bits(codec):
    """Each channel decodes as if it were compressed alone; the file's bitrate is channels x nominal."""
    stereo = torch.from_numpy(music_like(2.0, 24000, 2, seed=4).T.astype(np.float32))
    stereo[1] = torch.from_numpy(music_like(2.0, 24000, 1, seed=9)[:, 0].astype(np.float32)) * 0.3
    both, _ = decompress_bytes(compress_bytes(stereo, codec, sample_rate=24000), codec)
    for c in range(2):
        alone, _ = decompress_bytes(compress_bytes(stereo[c : c + 1], codec, sample_rate=24000), codec)
        assert torch.allclose(both[c], alone[0], atol=1e-5)
    audio = torch.from_numpy(music_like(10.0, 24000, 2).T.astype(np.float32))
    nominal = codec.config.n_q_for_bandwidth(1.8) * math.log2(codec.card) * codec.frame_rate / 1000
    packed = {"sample_rate": 24000, "bandwidth": 1.8, "entropy": False}  # bit-packed: exactly the nominal bits
    stereo_kbps = len(compress_bytes(audio, codec, **packed)) * 8 / 10.0 / 1000
    mono_kbps = len(compress_bytes(audio, codec, mono=True, **packed)) * 8 / 10.0 / 1000
    assert 2 * nominal <= stereo_kbps < 2 * nominal * 1.05 + 0.1 and nominal <= mono_kbps < nominal * 1.05 + 0.1


def test_six_channels_each_their_own(codec):
    """5.1: six streams in the file, each channel's codes those of that channel compressed alone."""
    x = torch.from_numpy(np.stack([music_like(1.0, 16000, 1, seed=s)[:, 0] * (s + 1) / 6 for s in range(6)]))
    data = compress_bytes(x.float(), codec, sample_rate=16000, chunk_seconds=0.3, entropy=True)
    header, codes = bitstream.read_mlc(io.BytesIO(data))  # [6, K, T]
    assert header.streams == 6 and codes.shape[0] == 6
    for c in (0, 5):
        _, alone = bitstream.read_mlc(io.BytesIO(compress_bytes(x[c : c + 1].float(), codec, sample_rate=16000)))
        assert np.array_equal(codes[c], alone)
    wav, sr = decompress_bytes(data, codec)
    assert wav.shape == x.shape and sr == 16000


def to_version_1(data: bytes) -> bytes:
    """The same one-stream file in the version-1 layout: the header's fields without `streams`."""
    import struct
    import zlib

    size = struct.unpack_from("<H", data, 6)[0]
    fields = data[8 : 8 + size]
    assert fields[-1] == 1, "only one-stream files have a version-1 form"
    head = b"MLC\x1a" + struct.pack("<HH", 1, size - 1) + fields[:-1]
    return head + struct.pack("<I", zlib.crc32(head)) + data[8 + size + 4 :]


def test_version_1_files_still_decode(codec):
    audio = torch.from_numpy(music_like(1.5, 24000, 2).T.astype(np.float32))
    v2 = without_levels(compress_bytes(audio, codec, sample_rate=24000, mono=True, chunk_seconds=0.4))
    v1 = to_version_1(v2)
    header = bitstream.read_header(io.BytesIO(v1))
    assert header.version == 1 and header.streams == 1 and header.level_frames == 0
    assert header == dataclasses.replace(bitstream.read_header(io.BytesIO(v2)), version=1)
    assert torch.equal(decompress_bytes(v1, codec)[0], decompress_bytes(v2, codec)[0])


# ---- file handling: trailing bytes, names that would lie ---------------------------------------------------
def test_decompress_refuses_bytes_after_the_last_chunk(capsys, tmp_path, codec_dir, mlc):
    """`cat a.mlc b.mlc` is not silently decoded as a.mlc (FORMAT.md: trailing bytes are an error)."""
    (tmp_path / "ab.mlc").write_bytes(mlc.read_bytes() * 2)
    rc, err = cli(capsys, "decompress", tmp_path / "ab.mlc", tmp_path / "out.wav", "--codec", codec_dir)
    assert_one_line_error(rc, err, "trailing data after the last chunk")
    assert not (tmp_path / "out.wav").exists()
    with pytest.raises(MusicLMError, match="trailing data"):
        decompress_bytes(mlc.read_bytes() + b"\0", codec_dir)


@pytest.mark.parametrize("name", ["song.flac", "song.wav", "song.mp3", "song.MLC.txt"])
def test_compress_output_must_be_named_mlc(capsys, tmp_path, codec_dir, name):
    sf.write(tmp_path / "in.wav", music_like(0.3, 24000, 1), 24000)
    rc, err = cli(capsys, "compress", tmp_path / "in.wav", tmp_path / name, "--codec", codec_dir)
    assert_one_line_error(rc, err, "NAME.mlc")
    assert not (tmp_path / name).exists()


@pytest.mark.parametrize("name, fmt", [("o.wav", "WAV"), ("o.flac", "FLAC"), ("o.ogg", "OGG"), ("o", "WAV")])
def test_decompress_writes_the_format_the_name_says(capsys, tmp_path, codec_dir, mlc, name, fmt):
    assert cli(capsys, "decompress", mlc, tmp_path / name, "--codec", codec_dir)[0] == 0
    assert sf.info(str(tmp_path / name)).format == fmt


@pytest.mark.parametrize("name", ["o.raw", "o.mlc", "o.txt", "o.au"])
def test_decompress_refuses_names_of_other_formats(capsys, tmp_path, codec_dir, mlc, name):
    rc, err = cli(capsys, "decompress", mlc, tmp_path / name, "--codec", codec_dir)
    assert_one_line_error(rc, err, "cannot write")
    assert not (tmp_path / name).exists()
