"""The .mlc format: bit-exact round trips, clear errors on bad files, and a fuzz loop over the parser."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musiclm.codec import bitstream
from musiclm.codec.bitstream import FormatError, Header, pack_codes, read_mlc, unpack_codes, write_mlc
from musiclm.codec.entropy import decode_codes, encode_codes
from musiclm.errors import MusicLMError


def make_header(**changes) -> Header:
    fields = dict(
        codec_name="tiny",
        fingerprint="0123456789abcdef",
        sample_rate=24000,
        hop_length=320,
        channels=1,
        orig_sample_rate=44100,
        orig_channels=2,
        num_samples=24000 * 3 + 17,
        orig_num_samples=0,
        n_q=4,
        card=1024,
        bandwidth=3.0,
        chunk_frames=75,
        entropy=False,
    )
    fields.update(changes)
    if not fields["orig_num_samples"]:  # the consistent original length
        n, sr, osr = fields["num_samples"], fields["sample_rate"], fields["orig_sample_rate"]
        fields["orig_num_samples"] = next(
            m for m in range(n * osr // sr - 2, n * osr // sr + 3) if bitstream.resampled_length(m, osr, sr) == n
        )
    return Header(**fields)


def skewed_codes(header: Header, seed: int = 0) -> np.ndarray:
    """Codes [n_q, T] with the uneven usage of a trained codec (so range coding has something to gain)."""
    rng = np.random.default_rng(seed)
    p = rng.dirichlet(np.full(header.card, 0.2))
    return rng.choice(header.card, size=(header.n_q, header.num_frames), p=p).astype(np.int64)


def dumps(header: Header, codes: np.ndarray) -> bytes:
    buf = io.BytesIO()
    write_mlc(buf, header, codes)
    return buf.getvalue()


@pytest.mark.parametrize("card", [2, 3, 64, 1000, 1024, 4096])
@pytest.mark.parametrize("entropy", [False, True])
def test_codes_round_trip_bit_exactly(card, entropy):
    header = make_header(card=card, entropy=entropy, num_samples=24000 * 2 + 5)
    codes = skewed_codes(header)
    codes[0, 0], codes[-1, -1] = 0, card - 1  # both ends of the range
    data = dumps(header, codes)
    got_header, got = read_mlc(io.BytesIO(data))
    assert got_header == header
    assert got.dtype == np.int64 and np.array_equal(got, codes)


def test_size_on_disk_is_bit_packed():
    header = make_header(card=1024)  # 10 bits per code, not 16
    data = dumps(header, skewed_codes(header))
    payload = header.n_q * header.num_frames * 10 / 8
    assert 128 <= header.packed_size(header.chunk_frames) < 1 << 14  # so each chunk's size is a 2-byte varint
    overhead = len(header.pack()) + header.num_chunks * 7  # mode + size + crc per chunk
    assert len(data) == pytest.approx(payload + overhead, abs=header.num_chunks)


def test_entropy_coding_saves_on_skewed_codes():
    kw = dict(num_samples=24000 * 30, card=256, chunk_frames=750)
    header = make_header(**kw)
    codes = skewed_codes(header)
    plain, coded = dumps(header, codes), dumps(make_header(**kw, entropy=True), codes)
    assert len(coded) < 0.95 * len(plain)


def test_learned_prior_round_trips_and_must_match():
    from musiclm.codec.entropy import prior_counts, prior_hash

    header = make_header(num_samples=24000 * 10, card=1024, chunk_frames=750)
    rng = np.random.default_rng(3)
    usage = rng.dirichlet(np.full(1024, 0.2), size=header.n_q)
    codes = np.stack([rng.choice(1024, size=header.num_frames, p=p) for p in usage])
    prior = prior_counts(usage * 1000)
    with_prior = make_header(num_samples=24000 * 10, card=1024, chunk_frames=750, entropy=True, prior=prior_hash(prior))
    buf = io.BytesIO()
    write_mlc(buf, with_prior, codes, prior)
    got_header, got = read_mlc(io.BytesIO(buf.getvalue()), prior)
    assert got_header.prior == prior_hash(prior) and np.array_equal(got, codes)
    adaptive = dumps(make_header(num_samples=24000 * 10, card=1024, chunk_frames=750, entropy=True), codes)
    assert len(buf.getvalue()) < 0.97 * len(adaptive)  # the prior helps where the adaptive model cannot
    for wrong in (None, prior_counts(usage[::-1] * 1000)):
        with pytest.raises(FormatError, match="code statistics"):
            read_mlc(io.BytesIO(buf.getvalue()), wrong)


def mixed_codes(header: Header, seed: int = 0) -> np.ndarray:
    """Codes [n_q, T]: row 0 skewed (adapting pays), the rest uniform (as a trained RVQ's deeper codebooks are
    on music it was not trained on: adapting costs more than it saves)."""
    codes = np.random.default_rng(seed).integers(0, header.card, size=(header.n_q, header.num_frames))
    codes[0] = skewed_codes(header, seed)[0]
    return codes


def test_adaptive_rows_picks_what_costs_less():
    from musiclm.codec.entropy import adaptive_rows

    header = make_header(num_samples=24000 * 10, card=1024, chunk_frames=750)
    codes = mixed_codes(header)
    assert adaptive_rows(codes, 1024) == [True, False, False, False]
    # measured, not assumed: each row on its own in the range coder, adaptive vs flat
    for row, adaptive in zip(codes, adaptive_rows(codes, 1024), strict=True):
        sizes = [len(encode_codes(row[None], 1024, adaptive=[a])) for a in (True, False)]
        assert (sizes[0] < sizes[1]) == adaptive


@pytest.mark.parametrize("version", [3, bitstream.VERSION])
def test_range_coded_files_of_each_version_round_trip(version):
    kw = dict(num_samples=24000 * 10, card=1024, chunk_frames=300, entropy=True)
    header = make_header(**kw, version=version)
    codes = mixed_codes(header)
    data = dumps(header, codes)
    got_header, got = read_mlc(io.BytesIO(data))
    assert got_header.version == version and np.array_equal(got, codes)


def test_version_4_codes_flat_rows_flat_and_packs_its_header():
    kw = dict(num_samples=24000 * 10, card=1024, chunk_frames=300, entropy=True)
    v3, v4 = make_header(**kw, version=3), make_header(**kw)
    codes = mixed_codes(v3)
    old, new = dumps(v3, codes), dumps(v4, codes)
    assert len(v4.pack()) <= len(v3.pack()) - 25  # varints: 24000 Hz in 3 bytes, not 4; n_q in 1, not 2
    # v3 adapts on every row, paying for it on the three uniform ones; v4 codes those flat (10 bits a code)
    packed = dumps(make_header(**{**kw, "entropy": False}), codes)
    assert len(new) < len(old) - 25 and len(new) < len(packed)


@given(st.integers(1, 12), st.integers(1, 5), st.integers(0, 2**31))
@settings(max_examples=60, deadline=None)
def test_pack_unpack_inverse(bits, n_q, seed):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(1, 40))
    codes = rng.integers(0, 2**bits, size=(n_q, frames))
    packed = pack_codes(codes, bits)
    assert len(packed) == (n_q * frames * bits + 7) // 8
    assert np.array_equal(unpack_codes(packed, n_q, frames, bits), codes)


def test_range_coder_inverse_on_random_shapes():
    rng = np.random.default_rng(1)
    for _ in range(30):
        card = int(rng.integers(2, 2048))
        codes = rng.integers(0, card, size=(int(rng.integers(1, 6)), int(rng.integers(1, 200))))
        assert np.array_equal(decode_codes(encode_codes(codes, card), *codes.shape, card), codes)


def test_range_coder_closed_form_matches_the_model_walk_with_priors_flat_rows_and_halving():
    """The encoder computes each code's interval in closed form (rows short enough that counts never halve)
    and walks the models otherwise; the decoder always walks them. Skewed and flat rows, with and without
    a prior, short rows and rows long enough to halve, block edges (32 codes) included, must all invert."""
    from musiclm.codec.entropy import ideal_bits, prior_counts

    rng = np.random.default_rng(5)
    for length in (1, 31, 32, 33, 500, 4200):
        for card in (2, 10, 1024):
            p = rng.dirichlet(np.full(card, 0.1))
            codes = rng.choice(card, size=(3, length), p=p)
            prior = prior_counts(rng.random((4, card)) ** 3)
            for kwargs in ({}, {"prior": prior}, {"prior": prior, "adaptive": [True, False, True]}):
                data = encode_codes(codes, card, **kwargs)
                assert np.array_equal(decode_codes(data, 3, length, card, **kwargs), codes), (length, card, kwargs)
            assert len(encode_codes(codes, card)) >= ideal_bits(codes, card) / 8 - 4


# ---- bad files ---------------------------------------------------------------------------------------------
def refix_header_crc(data: bytearray) -> None:
    size = struct.unpack_from("<H", data, 6)[0]
    end = 8 + size
    if end + 4 <= len(data):
        struct.pack_into("<I", data, end, zlib.crc32(bytes(data[:end])))


@pytest.fixture(scope="module")
def valid() -> bytes:
    header = make_header()
    return dumps(header, skewed_codes(header))


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[:0], "empty input"),
        (lambda d: b"RIFF" + d[4:], "wrong magic"),
        (lambda d: d[:3], "truncated"),
        (lambda d: d[:20], "truncated"),
        (lambda d: d[:-1], "truncated"),
        (lambda d: d[: len(d) // 2], "truncated"),
        (lambda d: d + b"\0", "after the last chunk"),
        (lambda d: d[:4] + struct.pack("<H", 9) + d[6:], "version 9"),
    ],
)
def test_bad_files_raise_clear_errors(valid, mutate, message):
    with pytest.raises(FormatError, match=message):
        read_mlc(io.BytesIO(mutate(valid)))


def test_future_version_says_upgrade(valid):
    data = valid[:4] + struct.pack("<H", bitstream.VERSION + 1) + valid[6:]
    with pytest.raises(FormatError, match="newer musiclm"):
        read_mlc(io.BytesIO(data))


def test_flipped_bit_in_every_region_is_caught(valid):
    header_end = 8 + struct.unpack_from("<H", valid, 6)[0] + 4
    for pos in (5, 12, header_end - 2, header_end + 1, header_end + 30, len(valid) - 10, len(valid) - 2):
        data = bytearray(valid)
        data[pos] ^= 0x10
        with pytest.raises(FormatError):
            read_mlc(io.BytesIO(bytes(data)))


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("sample_rate", 0, "sample_rate"),
        ("orig_sample_rate", 0, "orig_sample_rate"),
        ("orig_num_samples", 2**62, "samples"),
        ("hop_length", 0, "hop length"),
        ("n_q", 0, "codebooks"),
        ("card", 1, "codebook size"),
        ("chunk_frames", 2**31, "frames per chunk"),
        ("bandwidth", 0.0, "bandwidth"),
        ("orig_channels", 0, "channels"),
    ],
)
@pytest.mark.parametrize("version", [3, bitstream.VERSION])
def test_absurd_header_fields_are_refused(field, value, message, version):
    """Fields a forged header could carry (its CRC recomputed) never reach an allocation."""
    header = make_header(version=version)
    object.__setattr__(header, field, value)  # bypass nothing else: pack() writes what we set
    try:
        packed = bytearray(header.pack())
    except struct.error:
        pytest.skip("value does not fit the field")
    refix_header_crc(packed)
    with pytest.raises(FormatError, match=message):
        bitstream.read_header(io.BytesIO(bytes(packed)))


def mutate(data: bytes, rng: np.random.Generator) -> bytes:
    """One random mutation; half of them re-seal the CRCs so the checks behind the CRC get exercised."""
    d = bytearray(data)
    kind = int(rng.integers(0, 7))
    if kind == 0:  # flip bits
        for _ in range(int(rng.integers(1, 4))):
            d[int(rng.integers(0, len(d)))] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:  # truncate
        d = d[: int(rng.integers(0, len(d)))]
    elif kind == 2:  # insert junk
        pos = int(rng.integers(0, len(d)))
        d[pos:pos] = rng.bytes(int(rng.integers(1, 16)))
    elif kind == 3:  # delete a span
        pos = int(rng.integers(0, len(d)))
        del d[pos : pos + int(rng.integers(1, 16))]
    elif kind == 4:  # a random value in a header field, header CRC re-sealed
        pos = int(rng.integers(4, min(len(d), 60)))
        d[pos : pos + 4] = rng.bytes(4)
        refix_header_crc(d)
    elif kind == 5:  # an extreme integer in a header field, CRC re-sealed
        pos = int(rng.integers(8, min(len(d), 60)))
        d[pos : pos + 8] = rng.choice([b"\xff" * 8, b"\0" * 8, b"\x7f" + b"\xff" * 7])
        refix_header_crc(d)
    else:  # garbage chunk payload with a valid chunk CRC: reaches unpack / the range decoder
        start = 8 + struct.unpack_from("<H", d, 6)[0] + 4
        _, size, head = bitstream._parse_chunk_head(d, start, struct.unpack_from("<H", d, 4)[0]) or (0, len(d), 0)
        if size < len(d):  # (level bytes, where the file has them, are garbled with the payload)
            body = start + head
            d[body : body + size] = rng.bytes(size)
            d[start] = int(rng.integers(0, 2))
            struct.pack_into("<I", d, body + size, zlib.crc32(bytes(d[start : body + size])))
    return bytes(d)


def with_band_gains(header: Header, codes: np.ndarray, seed: int = 0) -> bytes:
    """A version-5 file whose chunks carry random band gains (musiclm.compress.band_gains)."""
    from musiclm.compress import band_gains

    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    buf.write(header.pack())
    for i in range(header.num_chunks):
        frames = header.chunk_length(i)
        shape = (header.streams, band_gains.num_bands(header.sample_rate), band_gains.cells(header, frames))
        steps = rng.integers(band_gains.MIN_STEP, band_gains.MAX_STEP + 1, shape)
        chunk = codes[..., i * header.chunk_frames : i * header.chunk_frames + frames]
        bitstream.write_chunk(buf, header, chunk, gains=band_gains.encode_steps(steps))
    return buf.getvalue()


def test_band_gains_files_round_trip():
    header = make_header(n_q=3, card=256, num_samples=24000 * 2, chunk_frames=40, entropy=True, gain_frames=4)
    codes = skewed_codes(header)
    got_header, got = read_mlc(io.BytesIO(with_band_gains(header, codes)))
    assert got_header == header and np.array_equal(got, codes)


def test_fuzz_parser_never_crashes_hangs_or_overallocates():
    """Thousands of mutated files: each parses or raises FormatError, fast, with bounded memory."""
    header = make_header(n_q=3, card=256, num_samples=24000 * 2, chunk_frames=40)
    entropy = dict(n_q=3, card=256, num_samples=24000 * 2, chunk_frames=40, entropy=True)
    files = [
        dumps(header, skewed_codes(header)),
        dumps(make_header(**entropy), skewed_codes(header)),
        dumps(make_header(**entropy, version=3), skewed_codes(header)),
        with_band_gains(make_header(**entropy, gain_frames=4), skewed_codes(header)),
    ]
    rng = np.random.default_rng(1234)
    counts = {"ok": 0, "error": 0}
    start = time.perf_counter()
    for i in range(5000):
        data = mutate(files[i % len(files)], rng)
        traced = i < 100  # tracemalloc slows everything ~50x: watch allocations on a sample
        if traced:
            tracemalloc.start()
        t = time.perf_counter()
        try:
            read_mlc(io.BytesIO(data))
            counts["ok"] += 1
        except MusicLMError:
            counts["error"] += 1
        assert time.perf_counter() - t < 5.0, f"case {i} took too long"  # a hang, not a busy machine
        if traced:
            peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
            assert peak < 16 << 20, f"case {i}: peak allocation {peak / 1e6:.0f} MB"
    assert counts["error"] > 4000  # nearly every mutation is detected
    assert time.perf_counter() - start < 120  # ~3 s on an idle core


@pytest.mark.parametrize("entropy", [False, True])
def test_streams_round_trip_bit_exactly(entropy):
    """Version 2: S streams per chunk (each channel of a mono codec), stream-major rows."""
    header = make_header(orig_channels=3, streams=3, card=256, entropy=entropy, num_samples=24000 * 2 + 5)
    rng = np.random.default_rng(5)
    codes = rng.integers(0, 256, size=(3, header.n_q, header.num_frames))
    got_header, got = read_mlc(io.BytesIO(dumps(header, codes)))
    assert got_header == header and np.array_equal(got, codes)
    assert header.packed_size(10) == (3 * header.n_q * 10 * 8 + 7) // 8


def test_streams_must_match_the_channels():
    for orig_channels, streams, channels in [(2, 3, 1), (2, 2, 2)]:
        header = make_header(orig_channels=orig_channels, streams=streams, channels=channels)
        with pytest.raises(FormatError, match="streams"):
            header.validate()


def test_trailing_bytes_and_verify(valid):
    header = bitstream.read_header(io.BytesIO(valid))
    f = io.BytesIO(valid)
    bitstream.read_header(f)
    bitstream.verify(f, header)  # intact: no error
    for data, message in [(valid + valid, "trailing data after the last chunk"), (valid[:-5], "truncated")]:
        f = io.BytesIO(data)
        bitstream.read_header(f)
        with pytest.raises(FormatError, match=message):
            bitstream.verify(f, header)
