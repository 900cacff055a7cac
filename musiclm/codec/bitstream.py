"""The .mlc file format: a small header, then the codes in independent CRC-checked chunks.

Layout (full description with offsets in FORMAT.md; integers little-endian or LEB128 varints):

    magic "MLC\\x1a" | version u16 | fields_size u16 | fields (fields_size bytes) | crc32 u32 of all before it
    chunk 0 | chunk 1 | ... | chunk ceil(T / chunk_frames) - 1 | end of file

    chunk = mode u8 (0 bit-packed, 1 range-coded) | payload_size varint | levels | [gains_size varint | gains]
            | payload | crc32 u32 of mode..payload

A chunk holds the codes [S, K, t] of `t = chunk_frames` frames (fewer in the last one) for S streams (one per
input channel, or one for a downmix), stream-major then codebook-major, each code in ceil(log2(card)) bits
or range-coded. Level corrections come before the codes: per stream, one signed byte per block of
`level_frames` frames, the gain in LEVEL_STEP_DB steps that the decoder applies to that block (what the gains
mean and how they are found: musiclm.compress.level). Their size follows from the header, so a reader can
still step over a damaged bit-packed chunk. Version 5 files may carry band gains too (header field
`gain_frames` > 0, range-coded files only): per stream, band and cell of `gain_frames` frames, a gain the
decoder applies to its short-time spectrum, range-coded (musiclm.compress.band_gains); a size of 0 means 0 dB
throughout. Chunks are independent (the entropy model restarts in each), so a decoder can stream them, and one
flipped bit is caught by its chunk's CRC.

Version 5 adds `gain_frames` after version 4's header fields. Version 4 packs the header's numbers as varints
and the chunk's payload size as one, and lets a range-coded chunk code each row flat or adaptively: ~90 bytes
less on 10 s of real music at 1.5 kbps (1.58 → 1.51 kbps on disk; version 3 kept such short files at low rates
5 % over their nominal bitrate). Versions 1 (no `streams` field: one stream), 2 (no level corrections) and 3
(fixed-width fields, every range-coded row adaptive) are
still read (version 4 and up: written too).

The reader never trusts a size field: every field is checked against limits before anything is allocated,
so a corrupt or hostile file costs at most one chunk's bytes (≤ MAX_CHUNK_BYTES) of memory.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from musiclm.errors import MusicLMError

MAGIC = b"MLC\x1a"  # \x1a stops `type`/`cat` on some systems from dumping binary, as in PNG's signature
# 2: adds `streams` (each input channel coded on its own); 3: adds level corrections; 4: varint fields and
# flat or adaptive range coding per row; 5: adds band gains. 1-4 are still read (and written, for tests and old
# readers).
VERSION = 5
LEVEL_STEP_DB = 0.25  # one level step; a signed byte spans ±31.75 dB (FORMAT.md says why)
MODE_PACKED, MODE_RANGE = 0, 1
FLAG_ENTROPY = 1  # the encoder tried range coding (a chunk still says which mode it used)
FLAG_PRIOR = 2  # the range coder's model starts from the codec's code-usage statistics (`prior` names them)

# Limits a valid file never reaches; anything beyond them is corruption and is refused before allocating.
MAX_NAME_BYTES = 64
MAX_SAMPLE_RATE = 768_000
MAX_CHANNELS = 64
MAX_HOURS = 100
MAX_N_Q = 256
MAX_CARD = 1 << 20
MAX_CHUNK_BYTES = 16 << 20
MAX_GAIN_BANDS = 512  # bounds a chunk's band gains (musiclm.compress.band_gains has ~80 at 24 kHz)
_FIELDS_V1 = struct.Struct("<B8sIIBIHQQHIdI8s")  # after the name; see Header.pack
_FIELDS_V2 = struct.Struct("<B8sIIBIHQQHIdI8sB")  # version 2: + streams u8
_FIELDS = struct.Struct("<B8sIIBIHQQHIdI8sBH")  # version 3: + level_frames u16
_LAYOUTS = {1: _FIELDS_V1, 2: _FIELDS_V2, 3: _FIELDS}  # fixed-width versions; 4 is varints (Header.pack)
# values each layout holds (v1: 14; v2: + streams; v3: + level_frames), counted from the format strings
_FIELD_COUNTS = {version: len(layout.unpack(bytes(layout.size))) for version, layout in _LAYOUTS.items()}
VERSIONS = (*_LAYOUTS, 4, 5)
# version 4's varint fields, in order, after flags and fingerprint (num_samples follows from the rest)
_VARINT_FIELDS_V4 = (
    "sample_rate",
    "hop_length",
    "channels",
    "orig_sample_rate",
    "orig_channels",
    "orig_num_samples",
    "n_q",
    "card",
    "bandwidth",  # as bits per second
    "chunk_frames",
    "streams",
    "level_frames",
)
_VARINT_FIELDS = {4: _VARINT_FIELDS_V4, 5: (*_VARINT_FIELDS_V4, "gain_frames")}
# field block sizes: name_len, a name of 1 .. MAX_NAME_BYTES, flags, fingerprint, varints (1-10 bytes), a prior
_FIELD_BYTES = {
    v: (1 + 1 + 1 + 8 + len(f), 1 + MAX_NAME_BYTES + 1 + 8 + 10 * len(f) + 8) for v, f in _VARINT_FIELDS.items()
}
_PREFIX = struct.Struct("<4sHH")
_CHUNK_HEAD = struct.Struct("<BI")  # versions 1-3
_MAX_CHUNK_HEAD = 5  # mode u8 + payload_size: u32 (versions 1-3) or a varint of ≤ 4 bytes (version 4)
_CRC = struct.Struct("<I")


class FormatError(MusicLMError):
    """A .mlc file that is truncated, corrupt, or from another version."""


class ChunkError(FormatError):
    """One damaged chunk. `resumable`: the reader stands at the next chunk, so the rest can still be read."""

    def __init__(self, message: str, resumable: bool):
        super().__init__(message)
        self.resumable = resumable


@dataclass(frozen=True)
class Header:
    codec_name: str
    fingerprint: str  # 16 hex chars: Codec.fingerprint() of the codec that encoded
    sample_rate: int  # codec rate
    hop_length: int  # samples per frame: frame rate = sample_rate / hop_length, exactly
    channels: int  # codec channels
    orig_sample_rate: int
    orig_channels: int
    num_samples: int  # at the codec rate
    orig_num_samples: int  # at the original rate: what decompression restores
    n_q: int  # codebooks stored per frame
    card: int
    bandwidth: float  # nominal kbps
    chunk_frames: int
    entropy: bool = False
    prior: str = ""  # 16 hex chars naming the initial counts of the range coder's model; "" = uniform
    # S: 1 = the input mixed to the codec's channels; orig_channels = each input channel coded on its own
    # by a mono codec (S times the bits of one stream: stereo costs twice the nominal bandwidth)
    streams: int = 1
    # frames per level-correction block (version 3); 0 = no corrections (always so in versions 1 and 2)
    level_frames: int = 0
    # frames per band-gain cell (version 5, range-coded files); 0 = no band gains
    gain_frames: int = 0
    version: int = VERSION  # the layout this header is read from or written in

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bits(self) -> int:
        return max(1, math.ceil(math.log2(self.card)))

    @property
    def num_frames(self) -> int:
        return math.ceil(self.num_samples / self.hop_length)

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_frames / self.chunk_frames)

    @property
    def duration(self) -> float:
        return self.orig_num_samples / self.orig_sample_rate

    def chunk_length(self, index: int) -> int:
        """Frames in chunk `index`."""
        return min(self.chunk_frames, self.num_frames - index * self.chunk_frames)

    @property
    def kbps(self) -> float:
        """Nominal kbps of the whole file: the bandwidth of one stream times the streams."""
        return self.bandwidth * self.streams

    def packed_size(self, frames: int) -> int:
        return (self.streams * self.n_q * frames * self.bits + 7) // 8

    def level_blocks(self, frames: int) -> int:
        """Level-correction blocks per stream in a chunk of `frames` frames (the last block may be shorter)."""
        return -(-frames // self.level_frames) if self.level_frames else 0

    def gain_limit(self, frames: int) -> int:
        """The most bytes a chunk of `frames` frames may give its band gains (0 without them): 16 bits a gain
        at most (the range coder's rarest symbol) for up to MAX_GAIN_BANDS bands, and the coder's flush."""
        return 2 * self.streams * MAX_GAIN_BANDS * -(-frames // self.gain_frames) + 8 if self.gain_frames else 0

    def validate(self) -> None:
        """Raise FormatError if a field is outside what any valid file holds."""

        def bad(what: str) -> FormatError:
            return FormatError(f"corrupt .mlc header: {what}")

        if not self.codec_name or len(self.codec_name.encode()) > MAX_NAME_BYTES:
            raise bad(f"codec name of {len(self.codec_name.encode())} bytes")
        if len(self.fingerprint) != 16 or any(c not in "0123456789abcdef" for c in self.fingerprint):
            raise bad(f"codec fingerprint {self.fingerprint!r}")
        for name in ("sample_rate", "orig_sample_rate"):
            if not 1 <= getattr(self, name) <= MAX_SAMPLE_RATE:
                raise bad(f"{name} {getattr(self, name)} Hz")
        if not 1 <= self.hop_length <= self.sample_rate:
            raise bad(f"hop length {self.hop_length} at {self.sample_rate} Hz")
        if not 1 <= self.channels <= MAX_CHANNELS or not 1 <= self.orig_channels <= MAX_CHANNELS:
            raise bad(f"{self.channels} codec / {self.orig_channels} original channels")
        if self.streams != 1 and (self.streams != self.orig_channels or self.channels != 1):
            raise bad(f"{self.streams} streams for {self.orig_channels} channels and a {self.channels}-channel codec")
        if not 1 <= self.num_samples <= MAX_HOURS * 3600 * self.sample_rate:
            raise bad(f"{self.num_samples} samples at {self.sample_rate} Hz")
        if resampled_length(self.orig_num_samples, self.orig_sample_rate, self.sample_rate) != self.num_samples:
            raise bad(f"{self.orig_num_samples} original samples do not match {self.num_samples} samples")
        if not 1 <= self.n_q <= MAX_N_Q:
            raise bad(f"{self.n_q} codebooks")
        if not 2 <= self.card <= MAX_CARD:
            raise bad(f"codebook size {self.card}")
        if not (math.isfinite(self.bandwidth) and 0 < self.bandwidth < 10_000):
            raise bad(f"bandwidth {self.bandwidth} kbps")
        levels = self.streams * self.level_blocks(self.chunk_frames) + self.gain_limit(self.chunk_frames)
        if not 1 <= self.chunk_frames or self.packed_size(self.chunk_frames) + levels > MAX_CHUNK_BYTES:
            raise bad(f"{self.chunk_frames} frames per chunk")
        if self.version not in VERSIONS:
            raise bad(f"version {self.version}")
        if self.version == 1 and self.streams != 1:
            raise bad(f"{self.streams} streams in version 1")
        if not 0 <= self.level_frames <= 0xFFFF or (self.level_frames and self.version < 3):
            raise bad(f"{self.level_frames} frames per level block in version {self.version}")
        if not 0 <= self.gain_frames <= 0xFFFF or (self.gain_frames and (self.version < 5 or not self.entropy)):
            raise bad(f"{self.gain_frames} frames per band-gain cell (version {self.version}, entropy {self.entropy})")
        if self.prior and (
            not self.entropy or len(self.prior) != 16 or any(c not in "0123456789abcdef" for c in self.prior)
        ):
            raise bad(f"entropy prior {self.prior!r}")

    def pack(self) -> bytes:
        name = self.codec_name.encode()
        flags = (FLAG_ENTROPY if self.entropy else 0) | (FLAG_PRIOR if self.prior else 0)
        prior = bytes.fromhex(self.prior) if self.prior else bytes(8)
        if self.version >= 4:
            numbers = {field: getattr(self, field) for field in _VARINT_FIELDS[self.version]}
            numbers["bandwidth"] = round(self.bandwidth * 1000)  # nominal kbps, to the bit per second
            varints = b"".join(_varint(numbers[field]) for field in _VARINT_FIELDS[self.version])
            fields = bytes([len(name), *name, flags]) + bytes.fromhex(self.fingerprint) + varints
            fields += prior if self.prior else b""
        else:
            values = (
                flags,
                bytes.fromhex(self.fingerprint),
                self.sample_rate,
                self.hop_length,
                self.channels,
                self.orig_sample_rate,
                self.orig_channels,
                self.num_samples,
                self.orig_num_samples,
                self.n_q,
                self.card,
                self.bandwidth,
                self.chunk_frames,
                prior,
                self.streams,
                self.level_frames,
            )
            layout = _LAYOUTS[self.version]
            fields = bytes([len(name)]) + name + layout.pack(*values[: _FIELD_COUNTS[self.version]])
        head = _PREFIX.pack(MAGIC, self.version, len(fields)) + fields
        return head + _CRC.pack(zlib.crc32(head))


def _varint(n: int) -> bytes:
    """Unsigned LEB128: 7 bits a byte, least significant first, the top bit set on all bytes but the last."""
    if n < 0:
        raise ValueError(f"varint of {n}")
    out = bytearray()
    while True:
        out.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
        n >>= 7
        if not n:
            return bytes(out)


def _parse_varint(data: bytes | bytearray, pos: int, max_bytes: int) -> tuple[int, int] | None:
    """The varint at data[pos:] → (value, position after it); None if it runs past the data or max_bytes."""
    value = 0
    for i in range(max_bytes):
        if pos + i >= len(data):
            return None
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return value, pos + i + 1
    return None


def resampled_length(n: int, orig_sr: int, new_sr: int) -> int:
    """Samples after resampling n samples (musiclm.audio.resample's rule: ceil), in exact integers."""
    return -(-n * new_sr // orig_sr)


# ---- bit packing -----------------------------------------------------------------------------------------
def pack_codes(codes: np.ndarray, bits: int) -> bytes:
    """codes [K, t] non-negative ints < 2**bits → bytes, codebook-major, least significant bit first."""
    flat = np.ascontiguousarray(codes, dtype=np.uint32).reshape(-1)
    bit_planes = (flat[:, None] >> np.arange(bits, dtype=np.uint32)) & 1  # [K*t, bits]
    return np.packbits(bit_planes.astype(np.uint8).reshape(-1), bitorder="little").tobytes()


def unpack_codes(data: bytes, n_q: int, frames: int, bits: int) -> np.ndarray:
    """Inverse of pack_codes → codes [n_q, frames] int64."""
    count = n_q * frames * bits
    if len(data) * 8 < count:
        raise FormatError(f"chunk payload of {len(data)} bytes is too short for {n_q}x{frames} codes")
    bit_planes = np.unpackbits(np.frombuffer(data, dtype=np.uint8), count=count, bitorder="little")
    weights = 1 << np.arange(bits, dtype=np.int64)
    return (bit_planes.reshape(-1, bits).astype(np.int64) @ weights).reshape(n_q, frames)


# ---- reading and writing -----------------------------------------------------------------------------------
def _read_exact(f: BinaryIO, size: int, what: str) -> bytes:
    parts, got = [], 0
    while got < size:
        block = f.read(size - got)
        if not block:
            raise FormatError(f"truncated .mlc file: {what} ends after {got} of {size} bytes")
        parts.append(block)
        got += len(block)
    return b"".join(parts)


def read_header(f: BinaryIO) -> Header:
    prefix = f.read(_PREFIX.size)
    if len(prefix) == 0:
        raise FormatError("empty input: not an .mlc file")
    if prefix[:4] != MAGIC[: len(prefix)]:
        raise FormatError("not an .mlc file (wrong magic bytes)")
    if len(prefix) < _PREFIX.size:
        raise FormatError("truncated .mlc file: header ends early")
    _, version, fields_size = _PREFIX.unpack(prefix)
    if version not in VERSIONS:
        newer = " (written by a newer musiclm; upgrade to read it)" if version > VERSION else ""
        raise FormatError(
            f"unsupported .mlc format version {version}; this musiclm reads versions 1 to {VERSION}{newer}"
        )
    if version >= 4:
        smallest, largest = _FIELD_BYTES[version]
    else:
        smallest, largest = _LAYOUTS[version].size + 2, _LAYOUTS[version].size + 1 + MAX_NAME_BYTES
    if not smallest <= fields_size <= largest:
        raise FormatError(f"corrupt .mlc header: field block of {fields_size} bytes")
    fields = _read_exact(f, fields_size, "header")
    (crc,) = _CRC.unpack(_read_exact(f, _CRC.size, "header checksum"))
    if zlib.crc32(prefix + fields) != crc:
        raise FormatError("corrupt .mlc header: checksum mismatch")
    name_len = fields[0]
    if not 1 <= name_len <= MAX_NAME_BYTES or 1 + name_len > fields_size:
        raise FormatError("corrupt .mlc header: codec name length disagrees with the header size")
    try:
        name = fields[1 : 1 + name_len].decode()
    except UnicodeDecodeError:
        raise FormatError("corrupt .mlc header: codec name is not UTF-8") from None
    if version >= 4:
        numbers = _fields_v4(fields, 1 + name_len, version)
    else:
        numbers = _fields_fixed(fields, 1 + name_len, version)
    flags, fingerprint, prior = numbers.pop("flags"), numbers.pop("fingerprint"), numbers.pop("prior")
    if flags & ~(FLAG_ENTROPY | FLAG_PRIOR) or (prior != bytes(8)) != bool(flags & FLAG_PRIOR):
        raise FormatError(f"corrupt .mlc header: unknown flags {flags:#x}")
    header = Header(
        codec_name=name,
        fingerprint=fingerprint.hex(),
        entropy=bool(flags & FLAG_ENTROPY),
        prior=prior.hex() if flags & FLAG_PRIOR else "",
        version=version,
        **numbers,
    )
    header.validate()
    return header


def _fields_fixed(fields: bytes, at: int, version: int) -> dict:
    """Versions 1-3: fixed-width fields after the name."""
    layout = _LAYOUTS[version]
    if at + layout.size != len(fields):
        raise FormatError("corrupt .mlc header: codec name length disagrees with the header size")
    values = layout.unpack(fields[at:])
    names = ("flags", "fingerprint", "sample_rate", "hop_length", "channels", "orig_sample_rate", "orig_channels")
    numbers = dict(zip(names, values[:7], strict=True))
    numbers.update(num_samples=values[7], orig_num_samples=values[8], n_q=values[9], card=values[10])
    numbers.update(bandwidth=float(values[11]), chunk_frames=values[12], prior=values[13])
    numbers.update(streams=values[14] if version >= 2 else 1, level_frames=values[15] if version >= 3 else 0)
    return numbers


def _fields_v4(fields: bytes, at: int, version: int) -> dict:
    """Versions 4-5: flags u8, fingerprint 8 B, the version's varints (_VARINT_FIELDS), the prior's 8 B iff
    flagged."""
    if at + 9 > len(fields):
        raise FormatError("corrupt .mlc header: codec name length disagrees with the header size")
    numbers: dict = {"flags": fields[at], "fingerprint": fields[at + 1 : at + 9]}
    pos = at + 9
    for name in _VARINT_FIELDS[version]:
        parsed = _parse_varint(fields, pos, 10)
        if parsed is None:
            raise FormatError(f"corrupt .mlc header: field {name} runs past the header")
        numbers[name], pos = parsed
    numbers["bandwidth"] /= 1000
    numbers["prior"] = fields[pos : pos + 8] if numbers["flags"] & FLAG_PRIOR else bytes(8)
    if pos + (8 if numbers["flags"] & FLAG_PRIOR else 0) != len(fields):
        raise FormatError("corrupt .mlc header: its fields do not fill the field block")
    # a zero rate leaves it 0, for Header.validate to name the rate
    rates = numbers["orig_sample_rate"], numbers["sample_rate"]
    numbers["num_samples"] = resampled_length(numbers["orig_num_samples"], *rates) if rates[0] else 0
    return numbers


def write_chunk(
    f: BinaryIO,
    header: Header,
    codes: np.ndarray,
    prior: np.ndarray | None = None,
    levels: np.ndarray | None = None,
    gains: bytes = b"",
) -> int:
    """Write codes [S, n_q, t] (or [n_q, t] for one stream) as one chunk (`encode_payload`, `chunk_bytes`);
    returns bytes written."""
    data = chunk_bytes(header, codes.shape[-1], *encode_payload(header, codes, prior), levels, gains)
    f.write(data)
    return len(data)


def encode_payload(header: Header, codes: np.ndarray, prior: np.ndarray | None = None) -> tuple[int, bytes]:
    """Codes [S, n_q, t] (or [n_q, t] for one stream) → (mode, payload) of their chunk. Range coding is used when
    it is smaller; `prior` [n_q, card] are the model's initial counts, named by header.prior."""
    rows = codes.reshape(-1, codes.shape[-1])  # [S * K, t]: stream-major, then codebook-major
    assert rows.shape[0] == header.streams * header.n_q, f"chunk codes {codes.shape} vs {header.streams} streams"
    mode, payload = MODE_PACKED, pack_codes(rows, header.bits)
    if header.entropy:
        from musiclm.codec.entropy import adaptive_rows, encode_codes

        _check_prior(header, prior)
        # one model per (stream, codebook) row; each stream's codebook k starts from prior[k]
        tiled = None if prior is None else np.tile(prior, (header.streams, 1))
        if header.version >= 4:  # each row adaptive, or flat where adapting would cost more than it saves
            adaptive = adaptive_rows(rows, header.card, tiled)
            flat_only = not any(adaptive)  # then the range coder would only add its flush bytes
            coded = payload if flat_only else _row_flags(adaptive) + encode_codes(rows, header.card, tiled, adaptive)
        else:
            coded = encode_codes(rows, header.card, tiled)
        if len(coded) < len(payload):
            mode, payload = MODE_RANGE, coded
    return mode, payload


def chunk_bytes(
    header: Header,
    frames: int,
    mode: int,
    payload: bytes,
    levels: np.ndarray | None = None,
    gains: bytes = b"",
) -> bytes:
    """A chunk of `frames` frames with its `encode_payload` → its bytes. `levels` [S, B] int8: the level
    corrections in LEVEL_STEP_DB steps (None: 0 dB), B = level_blocks(frames). `gains`: the chunk's coded band
    gains where the header has them (b"": 0 dB throughout)."""
    shape = (header.streams, header.level_blocks(frames))
    levels = np.zeros(shape, np.int8) if levels is None else np.asarray(levels)
    assert levels.shape == shape and levels.dtype == np.int8, f"levels {levels.shape} {levels.dtype} vs {shape}"
    assert len(gains) <= header.gain_limit(frames) and (header.gain_frames or not gains), "band gains"
    head = _chunk_head(header.version, mode, len(payload)) + levels.tobytes()
    if header.gain_frames:
        head += _varint(len(gains)) + gains
    return head + payload + _CRC.pack(zlib.crc32(head + payload))


def _row_flags(adaptive: list[bool]) -> bytes:
    """Version 4's range-coded payload starts with one bit per row, least significant first: 1 = adaptive."""
    return np.packbits(np.asarray(adaptive, dtype=np.uint8), bitorder="little").tobytes()


def _chunk_head(version: int, mode: int, size: int) -> bytes:
    return bytes([mode]) + _varint(size) if version >= 4 else _CHUNK_HEAD.pack(mode, size)


def _parse_chunk_head(data: bytes | bytearray, offset: int, version: int) -> tuple[int, int, int] | None:
    """The chunk head at data[offset:] → (mode, payload_size, head bytes); None where it does not parse."""
    if version < 4:
        if offset + _CHUNK_HEAD.size > len(data):
            return None
        return (*_CHUNK_HEAD.unpack_from(data, offset), _CHUNK_HEAD.size)
    parsed = _parse_varint(data, offset + 1, _MAX_CHUNK_HEAD - 1) if offset < len(data) else None
    return None if parsed is None else (data[offset], parsed[0], parsed[1] - offset)


def _read_chunk_head(f: BinaryIO, header: Header, limit: int, where: str) -> tuple[int, int | None, bytes]:
    """Read a chunk's head → (mode, payload_size or None where it does not parse, its bytes). A bit-packed
    file's heads all have one length, read whole even when garbled, so the reader can step to the next chunk."""
    if header.version < 4 or not header.entropy:
        size = _CHUNK_HEAD.size if header.version < 4 else 1 + len(_varint(limit))
        head = _read_exact(f, size, where)
    else:  # the varint's own bytes say where it ends
        head = bytearray(_read_exact(f, 2, where))
        while head[-1] & 0x80 and len(head) < _MAX_CHUNK_HEAD:
            head += _read_exact(f, 1, where)
        head = bytes(head)
    parsed = _parse_chunk_head(head, 0, header.version)
    if parsed is None or parsed[2] != len(head):
        return head[0], None, head
    return parsed[0], parsed[1], head


def _check_prior(header: Header, prior: np.ndarray | None) -> None:
    from musiclm.codec.entropy import prior_hash

    if header.prior and (prior is None or prior_hash(prior) != header.prior):
        raise FormatError(
            f"this file's range coder starts from code statistics {header.prior}, which the codec given does not carry"
        )
    assert header.prior or prior is None, "a prior must be named in the header"


def _read_gains(f: BinaryIO, header: Header, frames: int, where: str) -> tuple[bytes, bytes | None]:
    """A version-5 chunk's band gains → (their bytes as read, size varint included; the gains, None where the
    size does not parse or exceeds what the chunk may hold)."""
    if not header.gain_frames:
        return b"", b""
    size_bytes = bytearray(_read_exact(f, 1, where))
    while size_bytes[-1] & 0x80 and len(size_bytes) < 4:
        size_bytes += _read_exact(f, 1, where)
    parsed = _parse_varint(size_bytes, 0, 4)
    if parsed is None or parsed[0] > header.gain_limit(frames):
        return bytes(size_bytes), None
    gains = _read_exact(f, parsed[0], where)
    return bytes(size_bytes) + gains, gains


def read_chunk_bytes(f: BinaryIO, header: Header, index: int) -> tuple[int, bytes, bytes, bytes]:
    """Read chunk `index` and check its structure and CRC (no decoding) → (mode, levels, band gains, payload).

    A damaged chunk raises ChunkError; a file that ends inside the chunk raises FormatError ("truncated").
    A bit-packed chunk has a known size, so even a garbled length field leaves the reader at the next chunk;
    in a range-coded file it may not (`resumable` False: recovery searches with `find_chunk`)."""
    frames = header.chunk_length(index)
    where = f"chunk {index + 1}/{header.num_chunks}"
    limit = header.packed_size(frames)
    mode, size, head = _read_chunk_head(f, header, limit, where)
    levels = _read_exact(f, header.streams * header.level_blocks(frames), where)
    gain_bytes, gains = _read_gains(f, header, frames, where)
    problem = None
    if size is None:
        problem = f"corrupt .mlc file: {where} has an unreadable size"
    elif gains is None:
        problem = f"corrupt .mlc file: {where} has an unreadable band-gain size"
    elif mode not in (MODE_PACKED, MODE_RANGE) or (mode == MODE_RANGE and not header.entropy):
        problem = f"corrupt .mlc file: {where} has unknown mode {mode}"
    elif (mode == MODE_PACKED and size != limit) or (mode == MODE_RANGE and size >= limit):
        problem = f"corrupt .mlc file: {where} claims {size} bytes for {frames} frames"
    if problem and header.entropy:
        raise ChunkError(problem, resumable=False)
    payload = _read_exact(f, limit if problem else size, where)
    (crc,) = _CRC.unpack(_read_exact(f, _CRC.size, f"{where} checksum"))
    if problem:
        raise ChunkError(problem, resumable=True)
    if zlib.crc32(head + levels + gain_bytes + payload) != crc:
        # a range-coded chunk's flipped bits may be in its length: then the reader is not at the next chunk
        message = f"corrupt .mlc file: {where} fails its checksum (flipped bits?)"
        raise ChunkError(message, resumable=mode == MODE_PACKED and not header.entropy)
    return mode, levels, gains, payload


class ReplayReader:
    """A reader that keeps the bytes read since `mark()`, so that recovery can search them again for where
    the next chunk starts (`find_chunk`). Nothing is seeked, so pipes work too."""

    def __init__(self, f: BinaryIO):
        self._f = f
        self._pending = bytearray()  # bytes given back by `unread`, read before the file's
        self._since_mark = bytearray()

    def read(self, n: int) -> bytes:
        out = bytes(self._pending[:n])
        del self._pending[:n]
        if len(out) < n:
            out += self._f.read(n - len(out)) or b""
        self._since_mark += out
        return out

    def mark(self) -> None:
        self._since_mark = bytearray()

    def take_since_mark(self) -> bytearray:
        data, self._since_mark = self._since_mark, bytearray()
        return data

    def unread(self, data: bytes) -> None:
        self._pending[:0] = data


LOOKAHEAD_BYTES = 64 << 20  # how far find_chunk reads ahead to count the chunks left (hours of audio)


def find_chunk(f: ReplayReader, header: Header, index: int) -> int | None:
    """After a damaged chunk whose length cannot be trusted (range-coded), find the next chunk that can be read
    → its index (the reader standing at its start), or None when none is found (the file cannot be read on).

    The search starts one byte after the damaged chunk's first byte (the reader's mark) and tries every offset
    up to the longest a chunk can be: a candidate must have a valid mode, a length that fits, and a CRC that
    matches (a false match ~2^-32 per plausible offset). Which chunk it is follows from the intact chunks
    that chain from it to the end of the file (read ahead up to LOOKAHEAD_BYTES): chunks are smaller than
    the longest when range-coded, so the one found may lie past a second damaged chunk. Where the end cannot
    be reached that way, it is taken to be `index`."""
    if index >= header.num_chunks:
        return None
    data = f.take_since_mark()[1:]
    longest = _MAX_CHUNK_HEAD + header.streams * header.level_blocks(header.chunk_frames)
    longest += (4 if header.gain_frames else 0) + header.gain_limit(header.chunk_frames)
    longest += header.packed_size(header.chunk_frames) + _CRC.size

    def have(size: int) -> bool:  # at least `size` bytes in data, reading more as needed
        while len(data) < size:
            block = f.read(max(size - len(data), 1 << 16))
            if not block:
                return False
            data.extend(block)
        return True

    def chunk_end(offset: int, chunk: int) -> int | None:  # where a valid chunk `chunk` at `offset` ends
        frames = header.chunk_length(chunk)
        have(offset + _MAX_CHUNK_HEAD)  # a chunk is longer than any head, so a shorter rest holds none
        parsed = _parse_chunk_head(data, offset, header.version)
        if parsed is None:
            return None
        mode, size, head_size = parsed
        limit = header.packed_size(frames)
        if not ((mode == MODE_PACKED and size == limit) or (mode == MODE_RANGE and header.entropy and size < limit)):
            return None
        end = offset + head_size + header.streams * header.level_blocks(frames)
        if header.gain_frames:  # the band gains' size, then the gains
            have(end + 4)
            gain_size = _parse_varint(data, end, 4)
            if gain_size is None or gain_size[0] > header.gain_limit(frames):
                return None
            end = gain_size[1] + gain_size[0]
        end += size + _CRC.size
        if not have(end) or zlib.crc32(data[offset : end - _CRC.size]) != _CRC.unpack_from(data, end - _CRC.size)[0]:
            return None
        return end

    def chain(offset: int) -> tuple[int, bool]:  # intact chunks in a row from `offset`; do they end the file?
        count = 0
        while count < header.num_chunks - index and offset <= LOOKAHEAD_BYTES:
            end = chunk_end(offset, index)  # a full-length chunk, or else the last one, which may be shorter
            end = end if end is not None else chunk_end(offset, header.num_chunks - 1)
            if end is None:
                break
            count, offset = count + 1, end
            if not have(end + 1):
                return count, True
        return count, False

    for offset in range(longest):
        if not have(offset + 2):  # the shortest head
            break
        count, ends_file = chain(offset)
        if count:
            f.unread(bytes(data[offset:]))
            f.mark()
            return header.num_chunks - count if ends_file else index
    f.unread(bytes(data))  # nothing found: the rest is left for the caller to report
    return None


def read_chunk(
    f: BinaryIO, header: Header, index: int, prior: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, bytes]:
    """Read chunk `index` → (codes [S, n_q, t] int64, every code < card; levels [S, B] int8, B = 0 before
    version 3; the coded band gains, b"" without them). `prior`: see write_chunk."""
    frames, rows = header.chunk_length(index), header.streams * header.n_q
    mode, levels, gains, payload = read_chunk_bytes(f, header, index)
    if mode == MODE_RANGE:
        from musiclm.codec.entropy import decode_codes

        _check_prior(header, prior)
        tiled = None if prior is None else np.tile(prior, (header.streams, 1))
        adaptive = None
        if header.version >= 4:
            flag_bytes = (rows + 7) // 8
            bits = np.unpackbits(np.frombuffer(payload[:flag_bytes], np.uint8), bitorder="little")
            if len(payload) < flag_bytes or bits[rows:].any():
                where = f"chunk {index + 1}/{header.num_chunks}"
                raise ChunkError(f"corrupt .mlc file: {where} has malformed row models", resumable=True)
            adaptive, payload = bits[:rows].astype(bool).tolist(), payload[flag_bytes:]
        codes = decode_codes(payload, rows, frames, header.card, tiled, adaptive)
    else:
        codes = unpack_codes(payload, rows, frames, header.bits)
    if codes.size and int(codes.max()) >= header.card:
        where = f"chunk {index + 1}/{header.num_chunks}"
        raise ChunkError(f"corrupt .mlc file: {where} holds a code ≥ codebook size {header.card}", resumable=True)
    levels = np.frombuffer(levels, np.int8).reshape(header.streams, header.level_blocks(frames))
    return codes.reshape(header.streams, header.n_q, frames), levels, gains


def check_end(f: BinaryIO) -> None:
    if f.read(1):
        raise FormatError("corrupt .mlc file: trailing data after the last chunk")


def verify(f: BinaryIO, header: Header) -> None:
    """Check every chunk's length and CRC and the end of the file, without decoding codes (FormatError)."""
    for i in range(header.num_chunks):
        read_chunk_bytes(f, header, i)
    check_end(f)


def write_mlc(
    f: BinaryIO,
    header: Header,
    codes: np.ndarray,
    prior: np.ndarray | None = None,
    levels: list[np.ndarray] | None = None,
) -> None:
    """Whole-file writer: codes [n_q, T] (one stream) or [S, n_q, T], with T == header.num_frames; `levels`:
    one [S, B] int8 per chunk (see write_chunk), None for 0 dB everywhere."""
    header.validate()
    codes = codes.reshape(header.streams, header.n_q, -1)
    assert codes.shape[-1] == header.num_frames, f"codes {codes.shape} vs {header.num_frames} frames"
    f.write(header.pack())
    for i in range(header.num_chunks):
        start = i * header.chunk_frames
        chunk_levels = None if levels is None else levels[i]
        write_chunk(f, header, codes[..., start : start + header.chunk_length(i)], prior, chunk_levels)


def read_mlc(f: BinaryIO, prior: np.ndarray | None = None) -> tuple[Header, np.ndarray]:
    """Whole-file reader → (header, codes int64: [n_q, T] for one stream, [S, n_q, T] for more). Memory is
    bounded by the bytes actually read."""
    header = read_header(f)
    chunks = [read_chunk(f, header, i, prior)[0] for i in range(header.num_chunks)]
    check_end(f)
    codes = np.concatenate(chunks, axis=-1)
    return header, codes[0] if header.streams == 1 else codes
