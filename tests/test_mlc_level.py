""".mlc version 3 level corrections: the compressor gives back the original's loudness even when the codec's
decoder does not, block by block, without clicks; silence stays silent; the gains are under the chunk CRC."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from test_compress import music_like, tiny_codec, without_levels

from musiclm.codec import bitstream
from musiclm.codec.bitstream import LEVEL_STEP_DB, FormatError
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.compress.level import block_bounds, gain_curve

pytestmark = pytest.mark.usefixtures("one_thread")
SR = 24000


@pytest.fixture(scope="module")
def quiet_codec():
    """A codec whose decoder comes out 0.3 times (-10.5 dB) too quiet, as the shipped one does on some clips."""
    codec = tiny_codec()
    decode = codec.decode
    codec.decode = lambda codes, length=None, **kw: 0.3 * decode(codes, length, **kw)
    return codec


def loudness(wav: torch.Tensor) -> float:
    """Integrated loudness (LUFS, BS.1770 via pyloudnorm) of [C, N] at SR; RMS in dB without pyloudnorm."""
    x = wav.double().numpy()
    try:
        import pyloudnorm
    except ImportError:
        return float(10 * np.log10(np.mean(x**2)))
    return float(pyloudnorm.Meter(SR).integrated_loudness(x.T))


def tensor(x: np.ndarray) -> torch.Tensor:  # [N, C] → [C, N] float32
    return torch.from_numpy(np.ascontiguousarray(x.T, dtype=np.float32))


def test_round_trip_restores_loudness_of_a_quiet_codec(quiet_codec):
    audio = tensor(music_like(4.0, SR, 1))
    data = compress_bytes(audio, quiet_codec, sample_rate=SR, chunk_seconds=1.0)
    before = decompress_bytes(without_levels(data), quiet_codec)[0]  # what the codec alone gives
    after = decompress_bytes(data, quiet_codec)[0]
    assert abs(loudness(before) - loudness(audio)) > 5  # the test has something to fix
    assert abs(loudness(after) - loudness(audio)) < 1.0


def test_level_changing_over_time_comes_back_in_both_halves(quiet_codec):
    x = music_like(6.0, SR, 1)
    x[: 3 * SR] *= 0.05  # -26 dB, then the full level
    audio = tensor(x)
    after = decompress_bytes(compress_bytes(audio, quiet_codec, sample_rate=SR, chunk_seconds=2.0), quiet_codec)[0]
    # half a level block either side of the step is the curve's ramp from one level to the other
    quiet, loud = slice(0, int(2.6 * SR)), slice(int(3.4 * SR), None)
    for part in (quiet, loud):
        assert abs(loudness(after[:, part]) - loudness(audio[:, part])) < 1.0


def test_each_channel_gets_its_own_level(quiet_codec):
    x = music_like(3.0, SR, 2)
    x[:, 1] *= 0.1  # right 20 dB below left
    audio = tensor(x)
    after = decompress_bytes(compress_bytes(audio, quiet_codec, sample_rate=SR), quiet_codec)[0]
    for c in range(2):
        assert abs(loudness(after[c : c + 1]) - loudness(audio[c : c + 1])) < 1.0


def levels_of(data: bytes) -> np.ndarray:
    """All level corrections of a file → [S, blocks] int8."""
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    return np.concatenate([bitstream.read_chunk(f, header, i)[1] for i in range(header.num_chunks)], axis=1)


def test_silence_stays_silent_and_noise_is_never_lifted(quiet_codec):
    silence = torch.zeros(1, 2 * SR)
    # the random codec decodes silence to noise (~-30 dBFS): pushed down as far as a byte reaches, never up
    data = compress_bytes(silence, quiet_codec, sample_rate=SR, chunk_seconds=0.5)
    assert (levels_of(data) == -127).all()
    raw = decompress_bytes(without_levels(data), quiet_codec)[0]
    back = decompress_bytes(data, quiet_codec)[0]
    assert back.pow(2).mean() < raw.pow(2).mean() * 10 ** (-31 / 10)
    # a decoder that keeps silence silent (below the -70 dB floor): 0 dB, the output stays as it was
    faint = tiny_codec()
    decode = faint.decode
    faint.decode = lambda codes, length=None, **kw: 1e-5 * decode(codes, length, **kw)
    data = compress_bytes(silence, faint, sample_rate=SR, chunk_seconds=0.5)
    assert (levels_of(data) == 0).all()
    assert torch.equal(decompress_bytes(data, faint)[0], decompress_bytes(without_levels(data), faint)[0])


def test_decoder_applies_one_smooth_curve_through_the_file(quiet_codec):
    """Decoded = the codec's own decoding x one curve, linear in dB between all block centres of the file
    (chunk borders included): no steps, so no clicks or zipper noise."""
    x = music_like(3.0, SR, 1)
    x[SR:] *= 0.2
    data = compress_bytes(tensor(x), quiet_codec, sample_rate=SR, chunk_seconds=0.5)
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    assert header.version == bitstream.VERSION and header.level_frames == round(0.4 * header.frame_rate)
    centres, gains = [], []
    for i in range(header.num_chunks):
        starts, ends = block_bounds(header, i)
        centres.append((starts + ends) / 2)
        gains.append(bitstream.read_chunk(f, header, i)[1] * LEVEL_STEP_DB)
    curve = gain_curve(0, header.num_samples, np.concatenate(centres), np.concatenate(gains, axis=1))
    raw = decompress_bytes(without_levels(data), quiet_codec)[0].numpy()
    back = decompress_bytes(data, quiet_codec)[0].numpy()
    np.testing.assert_allclose(back, raw * curve, atol=1e-6)
    slope = np.abs(np.diff(20 * np.log10(curve[0])))
    assert slope.max() < 64 / (header.level_frames * header.hop_length) + 1e-9  # ≤ 63.5 dB per block, spread


def test_a_flipped_gain_byte_is_caught_by_the_chunk_crc(quiet_codec):
    audio = tensor(music_like(1.6, SR, 1))
    # bit-packed, so that every chunk's place follows from the header
    data = bytearray(compress_bytes(audio, quiet_codec, sample_rate=SR, chunk_seconds=0.4, entropy=False))
    header = bitstream.read_header(io.BytesIO(bytes(data)))
    assert header.num_chunks == 4 and header.level_blocks(header.chunk_frames) == 1
    # chunk 1 = mode, payload_size (a varint), 1 level byte, the codes, CRC (4); chunk 2's level byte follows
    head = 1 + len(bitstream._varint(header.packed_size(header.chunk_frames)))
    chunk_2 = len(header.pack()) + head + 1 + header.packed_size(header.chunk_frames) + 4
    data[chunk_2 + head] ^= 0x01
    with pytest.raises(FormatError, match="chunk 2/4 fails its checksum"):
        bitstream.read_mlc(io.BytesIO(bytes(data)))
    damage = []
    wav, _ = decompress_bytes(bytes(data), quiet_codec, on_damage=damage.append)
    assert [d.chunk for d in damage] == [1] and not wav[0, int(0.4 * SR) : int(0.8 * SR)].any()
    assert wav[0, : int(0.3 * SR)].abs().max() > 0.01  # the rest decodes


def test_version_2_files_decode_as_before(quiet_codec):
    """A version-2 file (no corrections) decodes to the codec's own streamed decoding, untouched."""
    from musiclm.codec.streaming import decode_chunks, receptive_frames

    audio = tensor(music_like(2.0, SR, 1))
    v2 = without_levels(compress_bytes(audio, quiet_codec, sample_rate=SR, chunk_seconds=0.5))
    header, codes = bitstream.read_mlc(io.BytesIO(v2))
    assert header.version == 2 and header.level_frames == 0
    chunks = torch.from_numpy(codes).split(header.chunk_frames, -1)
    ref = decode_chunks(
        quiet_codec, iter(chunks), header.num_samples, header.chunk_frames, receptive_frames(quiet_codec)
    )
    assert np.array_equal(decompress_bytes(v2, quiet_codec)[0].numpy(), np.concatenate(list(ref), axis=-1))


@pytest.mark.parametrize("entropy", [False, True])
def test_levels_round_trip_bit_exactly(entropy):
    from test_bitstream import make_header, skewed_codes

    header = make_header(orig_channels=2, streams=2, level_frames=20, chunk_frames=75, entropy=entropy)
    codes = np.stack([skewed_codes(header, seed) for seed in (0, 1)])  # [S, K, T]
    rng = np.random.default_rng(0)
    levels = [
        rng.integers(-128, 128, (2, header.level_blocks(header.chunk_length(i))), dtype=np.int8)
        for i in range(header.num_chunks)
    ]
    buf = io.BytesIO()
    bitstream.write_mlc(buf, header, codes, levels=levels)
    f = io.BytesIO(buf.getvalue())
    assert bitstream.read_header(f) == header
    for i in range(header.num_chunks):
        got_codes, got_levels, _ = bitstream.read_chunk(f, header, i)
        assert np.array_equal(got_levels, levels[i]) and np.array_equal(
            got_codes, codes[..., i * 75 : i * 75 + got_codes.shape[-1]]
        )
    bitstream.check_end(f)
    with pytest.raises(FormatError, match="level block"):  # no corrections in the older layouts
        make_header(level_frames=20, version=2).validate()
