""".mlc version 5 band gains: the decoder's spectrum brought to the original's level band by band, seamlessly across
chunks, under the chunk CRC, within the file's nominal size; version 4 files still read."""

from __future__ import annotations

import dataclasses
import io

import numpy as np
import pytest
import torch
from test_compress import cli, music_like, tiny_codec

from musiclm.cli import main
from musiclm.codec import bitstream
from musiclm.codec.bitstream import FormatError, Header
from musiclm.compress import band_gains, compress_bytes, decompress_bytes
from musiclm.compress.decode import Damage

pytestmark = pytest.mark.usefixtures("one_thread")
SR, HOP = 24000, 320


def header(seconds: float, chunk_frames: int, streams: int = 1, **kw) -> Header:
    n = int(seconds * SR)
    fields = dict(
        codec_name="t",
        fingerprint="0" * 16,
        sample_rate=SR,
        hop_length=HOP,
        channels=1,
        orig_sample_rate=SR,
        orig_channels=streams,
        num_samples=n,
        orig_num_samples=n,
        n_q=2,
        card=64,
        bandwidth=3.6,
        chunk_frames=chunk_frames,
        entropy=True,
        streams=streams,
        gain_frames=4,
    )
    return Header(**{**fields, **kw})


def blocks(audio: np.ndarray, h: Header) -> list[np.ndarray]:
    per_chunk = h.chunk_frames * h.hop_length
    return [audio[:, i : i + per_chunk] for i in range(0, audio.shape[-1], per_chunk)]


def sine(freq: float, seconds: float, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (amp * np.sin(2 * np.pi * freq * t))[None]


def test_zero_gains_give_the_input_back_and_chunking_does_not_show():
    audio = music_like(2.3, SR, 1).T.astype(np.float32)  # [1, N]
    h = header(2.3, chunk_frames=24)
    zero = [
        None if i == 1 else np.zeros((1, band_gains.num_bands(SR), band_gains.cells(h, h.chunk_length(i))))
        for i in range(h.num_chunks)
    ]
    out = np.concatenate(list(band_gains.apply_gains(zip(blocks(audio, h), zero, strict=True), h)), axis=1)
    assert out.shape == audio.shape
    np.testing.assert_allclose(out, audio, atol=1e-5)
    # the same gains cell by cell, in chunks of another length: the same output
    rng = np.random.default_rng(0)
    cells = -(-h.num_frames // h.gain_frames)
    steps = rng.integers(band_gains.MIN_STEP, band_gains.MAX_STEP + 1, (1, band_gains.num_bands(SR), cells))
    outs = []
    for chunk_frames in (24, 40):
        hc = header(2.3, chunk_frames=chunk_frames)
        per = chunk_frames // hc.gain_frames
        chunk_steps = [steps[..., i * per : (i + 1) * per] for i in range(hc.num_chunks)]
        pieces = band_gains.apply_gains(zip(blocks(audio, hc), chunk_steps, strict=True), hc)
        outs.append(np.concatenate(list(pieces), axis=1))
    np.testing.assert_allclose(outs[0], outs[1], atol=1e-5)
    assert np.abs(outs[0] - audio).max() > 0.01  # the gains did something


def test_gains_take_out_a_partial_the_decoder_added_and_lift_a_note_it_lost():
    """The decoder's faults the gains exist for: a partial that rings on where the original has none, and a
    note played too quietly."""
    original = sine(440.0, 1.0) + sine(1318.5, 1.0, amp=0.2)
    decoded = sine(440.0, 1.0) + sine(1318.5, 1.0, amp=0.05) + sine(659.3, 1.0, amp=0.2)  # 12 dB low; extra E5
    h = header(1.0, chunk_frames=75)
    steps = band_gains.GainAnalyser(h).steps(0, original, decoded)
    out = np.concatenate(list(band_gains.apply_gains([(decoded.astype(np.float32), steps)], h)), axis=1)

    def level_db(x: np.ndarray, freq: float) -> float:  # the sine's amplitude in dB, away from the edges
        seg = x[0, 4000:-4000]
        t = np.arange(len(seg)) / SR
        return 20 * np.log10(2 * abs(np.mean(seg * np.exp(-2j * np.pi * freq * (t + 4000 / SR)))))

    assert level_db(out, 659.3) < level_db(decoded, 659.3) - 18  # the added partial is gone
    assert abs(level_db(out, 1318.5) - level_db(original, 1318.5)) < 2.5  # the quiet note is back at its level
    assert abs(level_db(out, 440.0) - level_db(original, 440.0)) < 1.0  # the right note is left as it was


def test_twelve_kbps_sends_finer_gains_for_more_codebooks_within_its_size():
    """SETTINGS_BY_BANDWIDTH: 80 ms cells for 1 kbps at 6 kbps, 40 ms for 2 kbps at 12 kbps, in the header the
    decoder reads; each file within its nominal size."""
    from musiclm.codec import Codec, CodecConfig, SEANetConfig

    torch.manual_seed(0)
    config = CodecConfig(
        name="tiny-12", sample_rate=SR, seanet=SEANetConfig(n_filters=4, dimension=16), n_q=16, card=1024
    )
    codec = Codec(dataclasses.replace(config, bandwidths=(6.0, 12.0))).eval()  # 75 Hz: 0.75 kbps a codebook
    audio = torch.from_numpy(music_like(2.0, SR, 1).T.astype(np.float32))
    headers = {}
    for kbps in (6.0, 12.0):
        data = compress_bytes(audio, codec, sample_rate=SR, bandwidth=kbps)
        headers[kbps] = h = bitstream.read_header(io.BytesIO(data))
        settings = band_gains.settings_for(kbps)
        assert h.gain_frames == round(settings.cell_seconds * codec.frame_rate)
        assert h.n_q == codec.config.n_q_for_bandwidth(kbps - settings.kbps)
        assert len(data) * 8 / 2.0 / 1000 <= kbps * 1.03
        assert decompress_bytes(data, codec)[0].shape == audio.shape
    assert headers[12.0].gain_frames * 2 == headers[6.0].gain_frames == 6
    assert (headers[6.0].n_q, headers[12.0].n_q) == (6, 13)
    assert band_gains.settings_for(24.0) == band_gains.settings_for(12.0) != band_gains.settings_for(3.0)


def test_steps_round_trip_and_garbage_stays_in_range():
    h = header(1.0, chunk_frames=75, streams=2)
    rng = np.random.default_rng(1)
    shape = (2, band_gains.num_bands(SR), band_gains.cells(h, 75))
    steps = rng.integers(band_gains.MIN_STEP, band_gains.MAX_STEP + 1, shape)
    data = band_gains.encode_steps(steps)
    assert np.array_equal(band_gains.decode_steps(data, h, 75), steps)
    assert len(data) <= h.gain_limit(75)
    assert not band_gains.decode_steps(b"", h, 75).any()  # no bytes: 0 dB
    junk = band_gains.decode_steps(rng.bytes(50), h, 75)
    assert junk.shape == shape and junk.min() >= band_gains.MIN_STEP and junk.max() <= band_gains.MAX_STEP


def test_band_gains_bring_a_faulty_decoder_back_through_the_compressor_within_the_nominal_size():
    """End to end, over chunks: a stand-in decoder that plays the original 12 dB too quiet with a partial of its
    own (what the gains exist for) comes out at the original's level without the partial."""
    codec = tiny_codec()
    audio = torch.from_numpy(music_like(3.0, SR, 1).T.astype(np.float32))  # [1, N]
    padded = torch.nn.functional.pad(audio, (0, 10 * HOP))

    def faulty_decode(codes, length=None, frame_offset=0, phase_track=None):
        n = codes.shape[-1] * HOP
        t = (frame_offset * HOP + torch.arange(n)) / SR
        out = 0.25 * padded[:, frame_offset * HOP : frame_offset * HOP + n] + 0.2 * torch.sin(2 * torch.pi * 659.3 * t)
        out = out[None].expand(codes.shape[0], 1, n)
        return out if length is None else out[..., :length]

    codec.decode = faulty_decode
    data = compress_bytes(audio, codec, sample_rate=SR, bandwidth=3.6, chunk_seconds=1.0, band_gains=True)
    h = bitstream.read_header(io.BytesIO(data))
    assert h.version == 5 and h.gain_frames and h.level_frames and h.num_chunks == 3
    fewer = codec.config.n_q_for_bandwidth(3.6 - band_gains.settings_for(3.6).kbps)
    assert h.n_q == fewer < codec.config.n_q_for_bandwidth(3.6)
    assert len(data) * 8 / 3.0 / 1000 <= 3.6 * 1.03
    assert (
        bitstream.read_header(io.BytesIO(compress_bytes(audio, codec, sample_rate=SR, band_gains=False))).gain_frames
        == 0
    )
    out = decompress_bytes(data, codec)[0]
    without = decompress_bytes(_zero_gains(data), codec)[0]

    def rms_db(x: torch.Tensor) -> float:
        return 20 * np.log10(float(x.pow(2).mean().sqrt()))

    def partial_db(x: torch.Tensor) -> float:
        t = torch.arange(x.shape[-1]) / SR
        return 20 * np.log10(2 * abs(complex((x[0] * torch.exp(-2j * torch.pi * 659.3 * t)).mean())))

    assert rms_db(out) == pytest.approx(rms_db(audio), abs=1.5)
    assert partial_db(without) > partial_db(out) + 15  # the decoder's own partial, gone
    # and so all along, across the chunk borders at 1 s and 2 s too
    for start in range(0, 3 * SR - SR // 4 + 1, SR // 4):
        part = slice(start, start + SR // 4)
        assert rms_db(out[:, part]) == pytest.approx(rms_db(audio[:, part]), abs=2.0), start / SR


def _zero_gains(data: bytes) -> bytes:
    """The same file with every chunk's gains 0 dB."""
    f = io.BytesIO(data)
    h = bitstream.read_header(f)
    out = io.BytesIO()
    out.write(h.pack())
    for i in range(h.num_chunks):
        codes, _, _ = bitstream.read_chunk(f, h, i)
        bitstream.write_chunk(out, h, codes)
    return out.getvalue()


def test_gain_bytes_are_under_the_crc_and_recovery_finds_the_next_chunk():
    codec = tiny_codec()
    audio = torch.from_numpy(music_like(3.0, SR, 1).T.astype(np.float32))
    data = compress_bytes(audio, codec, sample_rate=SR, bandwidth=3.6, chunk_seconds=1.0, band_gains=True)
    f = io.BytesIO(data)
    h = bitstream.read_header(f)
    start = f.tell()
    _, size, head = bitstream._read_chunk_head(f, h, h.packed_size(h.chunk_frames), "chunk")
    gains_at = start + len(head) + h.streams * h.level_blocks(h.chunk_frames)  # after the levels: size, gains
    assert h.num_chunks == 3 and data[gains_at] > 0
    for at in (gains_at, gains_at + 2):  # the size, then a gain byte
        bad = data[:at] + bytes([data[at] ^ 0x5A]) + data[at + 1 :]
        with pytest.raises(FormatError, match="chunk 1/3"):
            decompress_bytes(bad, codec)
        reports: list[Damage] = []
        out, _ = decompress_bytes(bad, codec, on_damage=reports.append)
        assert [r.chunk for r in reports] == [0]
        good = decompress_bytes(data, codec)[0]
        n = int(1.0 * SR)
        assert not out[:, : n - 2000].any()  # the damaged chunk is silence
        # past the level curve's ramp from the damaged chunk (half a level block) and half a window
        np.testing.assert_allclose(out[:, n + 6000 :], good[:, n + 6000 :], atol=1e-5)


def test_headers_refuse_gains_where_they_cannot_be_and_version_4_still_reads():
    h = header(1.0, chunk_frames=75)
    assert bitstream.read_header(io.BytesIO(h.pack())) == h
    for bad in (dict(entropy=False), dict(version=4)):
        with pytest.raises(FormatError, match="band-gain"):
            dataclasses.replace(h, **bad).validate()
    v4 = dataclasses.replace(h, gain_frames=0, version=4)
    assert bitstream.read_header(io.BytesIO(v4.pack())) == v4
    assert len(v4.pack()) == len(dataclasses.replace(v4, version=5).pack()) - 1  # one varint more


def test_cli_sends_band_gains_at_6_kbps_and_not_when_asked(capsys, tmp_path):
    import soundfile as sf

    codec = tiny_codec()
    codec.config.bandwidths = (3.6, 6.0)
    codec_dir = codec.save_pretrained(tmp_path / "codec")
    sf.write(tmp_path / "in.wav", music_like(1.0, SR, 1), SR)
    for flags, expect in (
        ((), "band gains every 80 ms, level"),
        (("--no-band-gains",), "version 5, level corrections"),
    ):
        out = tmp_path / "x.mlc"
        rc, err = cli(capsys, "compress", tmp_path / "in.wav", out, "--codec", codec_dir, "-b", "6", "-f", *flags)
        assert rc == 0, err
        assert main(["info", str(out)]) == 0
        assert expect in capsys.readouterr().out
    rc, err = cli(
        capsys, "compress", tmp_path / "in.wav", out, "--codec", codec_dir, "-f", "--no-entropy", "--band-gains"
    )
    assert rc == 2 and "band gains are range-coded" in err


def test_the_steps_the_encoder_estimates_with_are_the_ones_the_decoder_reads():
    """GainAnalyser.last_steps (what the level analysis hears) equals what decode_steps gets from the bytes,
    whether the gains fit, had to let quiet cells go, or were dropped for want of room."""
    original = sine(440.0, 1.0) + sine(1318.5, 1.0, amp=0.2) + 0.003 * np.random.default_rng(0).standard_normal((1, SR))
    decoded = 0.5 * sine(440.0, 1.0) + sine(659.3, 1.0, amp=0.2)
    h = header(1.0, chunk_frames=75)
    analyse = band_gains.GainAnalyser(h)
    sizes = []
    for budget in (None, 40, 0):
        coded = analyse(0, original, decoded, budget)
        assert np.array_equal(band_gains.decode_steps(coded, h, 75), analyse.last_steps)
        sizes.append(len(coded))
    assert sizes[0] > 40 >= sizes[1] and sizes[2] == 0
