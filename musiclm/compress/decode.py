""".mlc → audio: read and check chunk by chunk, decode with context, apply the band gains (version 5,
musiclm.compress.band_gains) and then the level corrections (versions 3 and up, musiclm.compress.level), resample,
write block by block.

With `on_damage`, a damaged chunk does not stop decoding: it becomes silence and is reported (its index,
time range and what is wrong). Damage is assumed to be in place (flipped bits, a cut end): a bit-packed
chunk always has the same size, so decoding resumes at the next chunk even when a length field is garbled;
after a damaged chunk of a range-coded file the next intact chunk is searched for (bitstream.find_chunk). A
file that ends early loses everything after its end.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from musiclm.codec import bitstream
from musiclm.codec.bitstream import ChunkError, FormatError, Header
from musiclm.codec.streaming import context_frames, decode_chunks, resampled_blocks
from musiclm.compress import band_gains
from musiclm.compress.common import check_codec, check_destination, codec_prior, load_codec, open_output, progress_bar
from musiclm.compress.level import apply_levels
from musiclm.compress.reader import Source
from musiclm.compress.writer import AudioWriter, output_format
from musiclm.errors import MusicLMError
from musiclm.files import check_interrupt, read_stdin


@dataclass(frozen=True)
class Damage:
    """A chunk replaced with silence (`chunk` 0-based, None for bytes after the last chunk), or the chunks
    `chunk` to `last` when the file can be read no further."""

    chunk: int | None
    chunks: int
    start: float  # seconds
    end: float
    reason: str
    last: int | None = None

    def __str__(self) -> str:
        if self.chunk is None:
            return f"{self.reason} (ignored)"
        which = f"chunk {self.chunk + 1}" if self.last is None else f"chunks {self.chunk + 1}-{self.last + 1}"
        return f"{which}/{self.chunks} ({self.start:.2f}-{self.end:.2f} s) {self.reason}; replaced with silence"


class _Stdin:
    def read(self, n: int) -> bytes:
        return read_stdin(n)


class _input:
    def __init__(self, source: Source):
        self.source, self.file = source, None

    def __enter__(self) -> BinaryIO:
        s = self.source
        if isinstance(s, bytes):
            return io.BytesIO(s)
        if str(s) == "-":
            return _Stdin()
        if not isinstance(s, (str, Path)):
            return s
        if not Path(s).is_file():
            raise MusicLMError(f"{s}: no such file")
        self.file = open(s, "rb")  # noqa: SIM115 - closed in __exit__
        return self.file

    def __exit__(self, *exc) -> None:
        if self.file is not None:
            self.file.close()


def _check_prior(header: Header, codec) -> np.ndarray | None:
    prior = codec_prior(codec, header.n_q) if header.prior else None
    if header.prior:
        from musiclm.codec.entropy import prior_hash

        if prior is None or prior_hash(prior) != header.prior:
            raise MusicLMError(
                f"this file was range-coded with code statistics {header.prior}, but the codec's "
                f"are {prior_hash(prior) if prior is not None else 'missing'} (same weights, other training "
                "statistics?); decode with the codec directory that encoded it"
            )
    return prior


def decoded_blocks(
    f: BinaryIO,
    header: Header,
    codec,
    progress: bool | None = None,
    on_damage: Callable[[Damage], None] | None = None,
) -> Iterator[np.ndarray]:
    """Blocks [orig_channels, L] at the original rate, orig_num_samples in all; checks the file's end."""
    prior = _check_prior(header, codec)
    damaged: set[int] = set()
    levels: dict[int, np.ndarray] = {}  # chunk → its level corrections [S, B], until its audio is decoded
    gains: dict[int, bytes] = {}  # chunk → its coded band gains, likewise
    lost: list[str] = []  # why every later chunk is missing, once reading cannot go on

    def damage(i: int, reason: str, last: int | None = None) -> None:  # chunks i..last (i alone: None)
        last = i if last is None else last
        start = i * header.chunk_frames / header.frame_rate
        end = (last * header.chunk_frames + header.chunk_length(last)) / header.frame_rate
        damaged.update(range(i, last + 1))
        on_damage(Damage(i, header.num_chunks, start, min(end, header.duration), reason, last if last > i else None))

    # recovering, the reader keeps each chunk's bytes: after a damaged range-coded chunk (its length is not to
    # be trusted) the next chunk is found by searching them (bitstream.find_chunk)
    reader = f if on_damage is None else bitstream.ReplayReader(f)
    skip_to = 0  # chunks below this one were lost with a damaged chunk before them

    def code_chunks() -> Iterator[np.ndarray]:  # codes [S, K, t] per chunk; zeros stand in for damage
        nonlocal skip_to
        with progress_bar(header, progress, "decompress") as bar:
            for i in range(header.num_chunks):
                check_interrupt()
                codes = None
                if lost:  # nothing after can be read: one report, and no decoding of silence
                    damage(i, lost[0], header.num_chunks - 1)
                    bar.update((header.num_frames - i * header.chunk_frames) / header.frame_rate)
                    return
                if i < skip_to:
                    damage(i, "lost: damaged too (the next chunk found lies past it)")
                else:
                    if on_damage is not None:
                        reader.mark()
                    try:
                        codes, levels[i], gains[i] = bitstream.read_chunk(reader, header, i, prior)
                    except FormatError as e:
                        if on_damage is None:
                            raise
                        damage(i, _reason(e, i, header.num_chunks))
                        if isinstance(e, ChunkError) and not e.resumable:
                            found = bitstream.find_chunk(reader, header, i + 1)
                            if found is None:
                                lost.append(f"lost: the file cannot be read past the damaged chunk {i + 1}")
                            skip_to = i + 1 if found is None else found
                        elif not isinstance(e, ChunkError):
                            lost.append("missing: the file ends earlier")
                if codes is None:
                    codes = np.zeros((header.streams, header.n_q, header.chunk_length(i)), np.int64)
                yield torch.from_numpy(codes)
                bar.update(header.chunk_length(i) / header.frame_rate)

    blocks = decode_chunks(codec, code_chunks(), header.num_samples, header.chunk_frames, context_frames(codec))
    # decode_chunks yields one block per chunk, after reading that chunk (and maybe the next few); where the
    # reading stopped early, the chunks left are silence
    silenced = _filled(
        (np.zeros_like(b) if i in damaged else b for i, b in enumerate(blocks)),
        header,
        header.streams * codec.channels,
    )
    if header.gain_frames:  # band gains first, then the level curve (found against their result)

        def steps(i: int) -> np.ndarray | None:  # a damaged chunk's cells: 0 dB
            coded = gains.pop(i, None)
            return (
                None
                if i in damaged or coded is None
                else band_gains.decode_steps(coded, header, header.chunk_length(i))
            )

        silenced = band_gains.apply_gains(((b, steps(i)) for i, b in enumerate(silenced)), header)
    if header.level_frames:
        silenced = apply_levels(((b, levels.pop(i, None)) for i, b in enumerate(silenced)), header)
    yield from resampled_blocks(
        silenced,
        header.sample_rate,
        header.orig_sample_rate,
        header.num_samples,
        header.orig_channels,
        header.orig_num_samples,
    )
    if not lost:
        try:
            bitstream.check_end(reader)
        except FormatError as e:
            if on_damage is None:
                raise
            on_damage(Damage(None, header.num_chunks, header.duration, header.duration, str(e)))


def _filled(blocks: Iterator[np.ndarray], header: Header, rows: int) -> Iterator[np.ndarray]:
    """Blocks [rows, L] per chunk, then zero blocks for the chunks a stream that stopped early did not reach."""
    count = 0
    for block in blocks:
        count += 1
        yield block
    per_chunk = header.chunk_frames * header.hop_length
    for i in range(count, header.num_chunks):
        yield np.zeros((rows, min(per_chunk, header.num_samples - i * per_chunk)), np.float32)


def _reason(e: FormatError, index: int, chunks: int) -> str:
    """A chunk's problem without the words the report already says ("corrupt .mlc file: chunk 2/4 ...")."""
    text = re.sub(r"^(corrupt|truncated) \.mlc file: ", "", str(e))
    text = re.sub(rf"^chunk {index + 1}/{chunks}( checksum)? ", "", text)
    return f"truncated: {text}" if str(e).startswith("truncated") else text


def decompress(
    source: Source,
    destination: str | Path | BinaryIO,
    codec=None,
    force: bool = False,
    progress: bool | None = None,
    on_damage: Callable[[Damage], None] | None = None,
) -> Header:
    """Decode an .mlc file (path, '-', bytes or file object) to audio at `destination` (a path: the format
    its extension names, .wav .flac .ogg ..., WAV if none; '-': WAV on stdout; a binary file object: WAV).
    `on_damage`: recover, turning damaged chunks into silence and passing each one to this function."""
    check_destination(source, destination, force)
    fmt = output_format(destination)
    with _input(source) as f:
        header = bitstream.read_header(f)
        codec = load_codec(codec)
        check_codec(header, codec)
        with open_output(destination, force) as out:
            writer = AudioWriter(out, fmt, header.orig_sample_rate, header.orig_channels, header.orig_num_samples)
            ok = False
            try:
                for block in decoded_blocks(f, header, codec, progress, on_damage):
                    writer.write(block)
                ok = True
            finally:  # before the file under it is published (or deleted, on failure)
                writer.close(warn=ok)
    return header


def read_codes(data: bytes, codec=None) -> tuple[Header, np.ndarray]:
    """.mlc bytes → (header, codes int64: [n_q, T] for one stream, [S, n_q, T] for more), not decoded to audio;
    a range-coded file is read with the codec's code statistics, as decompress reads it."""
    codec = load_codec(codec)
    header = bitstream.read_header(io.BytesIO(data))
    check_codec(header, codec)
    return bitstream.read_mlc(io.BytesIO(data), _check_prior(header, codec))


def decompress_bytes(data: bytes, codec=None, on_damage: Callable[[Damage], None] | None = None) -> tuple[Tensor, int]:
    """.mlc bytes → (wav [C, N] float32 at the original rate, that rate)."""
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    codec = load_codec(codec)
    check_codec(header, codec)
    wav = np.concatenate(list(decoded_blocks(f, header, codec, False, on_damage)), axis=-1)
    return torch.from_numpy(wav), header.orig_sample_rate


def read_info(source: Source, verify: bool = False) -> Header:
    """The header of an .mlc file, without decoding it. `verify`: also check every chunk's length and CRC
    and the end of the file (FormatError names the first problem)."""
    with _input(source) as f:
        header = bitstream.read_header(f)
        if verify:
            bitstream.verify(f, header)
        return header
