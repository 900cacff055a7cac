"""Audio input for the compressor: a file, stdin, bytes or a tensor → rate, channels, length, blocks [C, L].

Every source delivers exactly the number of samples its header promises, or fails: a truncated MP3, FLAC or
WAV (fewer samples decode than the header counts) and an Ogg stream without its end-of-stream page are
refused rather than padded with silence.

Stdin is streamed, so memory stays bounded for any length. A WAV on stdin (PCM or float, its length in the
header) is parsed here and read block by block; anything else (FLAC, Ogg, MP3, a WAV of unknown length) is
copied to a temporary file first, because libsndfile seeks in those, which a pipe cannot do.
"""

from __future__ import annotations

import io
import os
import re
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
from torch import Tensor

from musiclm.codec import bitstream
from musiclm.errors import MusicLMError
from musiclm.files import check_interrupt, read_stdin

Source = str | Path | bytes | BinaryIO
BLOCK_SAMPLES = 1 << 16  # samples per block read
SPOOL_BYTES = 1 << 20  # stdin copied to a temporary file in pieces of this size
MP3_SLACK = 2 * 1152  # an MP3's sample count may exceed what decodes by its encoder delay: about a frame
_UNKNOWN_SIZES = (0, 0xFFFFFFFF)  # data sizes of WAVs written to pipes by streaming encoders


def short_error(e: Exception) -> str:
    text = re.sub(r"^Error opening .*?: ", "", str(e).strip())  # soundfile repeats the file object's repr
    return text.splitlines()[0][:200] if text else type(e).__name__


class AudioSource:
    """A sequential reader: `sample_rate`, `channels`, `frames` and `blocks()` of float32 [C, L]."""

    name: str
    sample_rate: int
    channels: int
    frames: int
    slack = 0  # samples that may be missing at the end without calling the source truncated

    def _read(self, n: int) -> np.ndarray:  # up to n samples [C, n'] (fewer only at the end)
        raise NotImplementedError

    def _check(self) -> None:
        if self.frames <= 0:
            raise MusicLMError(f"{self.name}: empty audio (no samples)")
        if not 1 <= self.sample_rate <= bitstream.MAX_SAMPLE_RATE or not 1 <= self.channels <= bitstream.MAX_CHANNELS:
            raise MusicLMError(f"{self.name}: unsupported audio ({self.sample_rate} Hz, {self.channels} channels)")

    def blocks(self) -> Iterator[np.ndarray]:
        """Exactly `frames` samples in blocks [C, L]; a source that ends early raises MusicLMError."""
        done = 0
        while done < self.frames:
            check_interrupt()
            n = min(BLOCK_SAMPLES, self.frames - done)
            block = self._read(n)
            if block.shape[1] < n:
                missing = self.frames - done - block.shape[1]
                if missing > self.slack:
                    got = (done + block.shape[1]) / self.sample_rate
                    raise MusicLMError(
                        f"{self.name}: truncated or damaged audio: only {got:.2f} s of the "
                        f"{self.frames / self.sample_rate:.2f} s its header promises decode"
                    )
                block = np.pad(block, ((0, 0), (0, n - block.shape[1])))
            if not np.isfinite(block).all():
                raise MusicLMError(f"{self.name}: audio contains NaN or infinite samples")
            done += n
            yield np.ascontiguousarray(block, dtype=np.float32)

    def close(self) -> None:
        pass


class TensorSource(AudioSource):
    def __init__(self, wav: Tensor, sample_rate: int | None):
        if wav.dim() != 2 or sample_rate is None:
            raise MusicLMError(f"expected audio shaped [C, N] with a sample_rate, got {list(wav.shape)}")
        self.name, self.array = "<tensor>", wav.detach().float().cpu().numpy()
        self.sample_rate, (self.channels, self.frames) = int(sample_rate), self.array.shape
        self.done = 0
        self._check()

    def _read(self, n: int) -> np.ndarray:
        self.done += n
        return self.array[:, self.done - n : self.done]


class SoundFileSource(AudioSource):
    """Any format libsndfile reads, from a path or a seekable binary file."""

    def __init__(self, file: str | BinaryIO, name: str, owned: BinaryIO | None = None):
        self.name, self.owned = name, owned  # `owned`: a temporary file closed (deleted) with the source
        try:
            self.file = sf.SoundFile(file)
        except Exception as e:
            self.close()
            raise MusicLMError(f"{name}: unreadable audio ({short_error(e)})") from None
        self.sample_rate, self.channels, self.frames = self.file.samplerate, self.file.channels, self.file.frames
        self.slack = MP3_SLACK if self.file.format == "MP3" else 0
        try:
            if isinstance(file, str):
                with open(file, "rb") as raw:
                    _check_complete(raw, self.file.format, name)
            else:
                _check_complete(file, self.file.format, name)
            self._check()
        except BaseException:
            self.close()
            raise

    def _read(self, n: int) -> np.ndarray:
        try:
            return self.file.read(n, dtype="float32", always_2d=True).T
        except Exception as e:
            raise MusicLMError(f"{self.name}: truncated or damaged audio ({short_error(e)})") from None

    def close(self) -> None:
        if getattr(self, "file", None) is not None:
            self.file.close()
        if self.owned is not None:
            self.owned.close()


def _check_complete(f: BinaryIO, fmt: str, name: str) -> None:
    """Refuse files whose container shows that the end is missing (their sample count cannot tell)."""
    start = f.tell()
    size = f.seek(0, io.SEEK_END)
    if fmt == "OGG":
        # The last page of a complete Ogg stream carries the end-of-stream flag (RFC 3533 §6, header_type
        # 0x04); a cut file ends in a page without it, or in a partial page. A page is at most ~64 KiB.
        f.seek(max(0, size - (1 << 17)))
        tail = f.read()
        page = tail.rfind(b"OggS\x00")
        if page < 0 or page + 6 > len(tail) or not tail[page + 5] & 0x04:
            f.seek(start)
            raise MusicLMError(f"{name}: truncated Ogg stream (no end-of-stream page)")
    elif fmt == "WAV":
        f.seek(0)
        layout = parse_wav_header(f.read, name)
        if layout is not None and layout.data_bytes not in _UNKNOWN_SIZES:
            held = size - layout.data_offset
            if held < layout.data_bytes - layout.block_align + 1:
                f.seek(start)
                raise MusicLMError(
                    f"{name}: truncated WAV: its header promises {layout.data_bytes // layout.block_align} "
                    f"samples, the file holds {max(0, held) // layout.block_align}"
                )
    f.seek(start)


# ---- WAV on stdin ------------------------------------------------------------------------------------------
@dataclass
class WavLayout:
    channels: int
    sample_rate: int
    block_align: int
    dtype: str  # numpy dtype of one sample: "u1", "<i2", "<i3" (24-bit, unpacked by hand), "<i4", "<f4", "<f8"
    data_bytes: int
    data_offset: int  # bytes before the samples


_DTYPES = {(1, 8): "u1", (1, 16): "<i2", (1, 24): "<i3", (1, 32): "<i4", (3, 32): "<f4", (3, 64): "<f8"}


def parse_wav_header(read, name: str) -> WavLayout | None:
    """Read a RIFF/WAVE header up to the start of the samples with `read(n)`; None for a WAV whose encoding
    this parser does not handle (libsndfile then reads it). RIFF layout: Microsoft's multimedia spec, 1991."""
    head = read(12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        return None
    offset, fmt = 12, None
    while True:
        chunk = read(8)
        if len(chunk) < 8:
            raise MusicLMError(f"{name}: truncated WAV header")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        offset += 8
        if cid == b"data":
            if fmt is None:
                raise MusicLMError(f"{name}: damaged WAV (samples before the format chunk)")
            tag, channels, rate, _, align, bits = fmt
            dtype = _DTYPES.get((tag, bits))
            if dtype is None or channels < 1 or align != channels * bits // 8:
                return None
            return WavLayout(channels, rate, align, dtype, size, offset)
        if size > 1 << 24 and cid != b"data":
            return None  # a huge chunk before the samples (embedded art?): leave it to libsndfile
        body = read(size + (size & 1))  # chunks are padded to even sizes
        offset += len(body)
        if len(body) < size:
            raise MusicLMError(f"{name}: truncated WAV header")
        if cid == b"fmt ":
            if size < 16:
                raise MusicLMError(f"{name}: damaged WAV format chunk")
            fmt = list(struct.unpack("<HHIIHH", body[:16]))
            if fmt[0] == 0xFFFE and size >= 26:  # WAVE_FORMAT_EXTENSIBLE: the real tag opens the sub-format
                fmt[0] = struct.unpack("<H", body[24:26])[0]


class WavStreamSource(AudioSource):
    """Samples of a parsed WAV read from a stream, block by block."""

    def __init__(self, layout: WavLayout, read, name: str):
        self.layout, self.read, self.name = layout, read, name
        self.sample_rate, self.channels = layout.sample_rate, layout.channels
        self.frames = layout.data_bytes // layout.block_align
        self._check()

    def _read(self, n: int) -> np.ndarray:
        lay = self.layout
        data = self.read(n * lay.block_align)
        data = data[: len(data) // lay.block_align * lay.block_align]
        if lay.dtype == "<i3":  # 24-bit: widen to int32 by putting each sample in the top three bytes
            b = np.frombuffer(data, np.uint8).reshape(-1, 3)
            x = (np.pad(b, ((0, 0), (1, 0))).view("<i4")[:, 0] / 2147483648.0).astype(np.float32)
        elif lay.dtype == "u1":
            x = (np.frombuffer(data, np.uint8).astype(np.float32) - 128) / 128
        elif lay.dtype.startswith("<i"):
            raw = np.frombuffer(data, lay.dtype)
            x = (raw / float(1 << (8 * raw.itemsize - 1))).astype(np.float32)
        else:
            x = np.frombuffer(data, lay.dtype).astype(np.float32)
        return x.reshape(-1, lay.channels).T


class _Tee:
    """Reads stdin and keeps a copy of what it read, so a header parsed in vain can still be spooled."""

    def __init__(self):
        self.copy = bytearray()

    def read(self, n: int) -> bytes:
        data = read_stdin(n)
        self.copy += data
        return data


def open_stdin() -> AudioSource:
    tee = _Tee()
    layout = parse_wav_header(tee.read, "<stdin>")
    if not tee.copy:
        raise MusicLMError("<stdin>: empty input (no data)")
    if layout is not None and layout.data_bytes not in _UNKNOWN_SIZES:
        return WavStreamSource(layout, read_stdin, "<stdin>")
    spool = tempfile.TemporaryFile(prefix="musiclm-stdin-")  # noqa: SIM115 - owned by the source
    try:
        spool.write(tee.copy)
        while block := read_stdin(SPOOL_BYTES):
            check_interrupt()
            spool.write(block)
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return SoundFileSource(spool, "<stdin>", owned=spool)


def open_audio(audio: Source | Tensor, sample_rate: int | None = None) -> AudioSource:
    """A path, '-' (stdin), the bytes of an audio file, a binary file object, or wav [C, N] + sample_rate."""
    if isinstance(audio, Tensor):
        return TensorSource(audio, sample_rate)
    if isinstance(audio, bytes):
        if not audio:
            raise MusicLMError("<bytes>: empty input (no data)")
        return SoundFileSource(io.BytesIO(audio), "<bytes>")
    if str(audio) == "-":
        return open_stdin()
    if isinstance(audio, (str, Path)):
        if not Path(audio).is_file():
            raise MusicLMError(f"{audio}: no such file")
        if os.path.getsize(audio) == 0:
            raise MusicLMError(f"{audio}: empty input (no data)")
        return SoundFileSource(str(audio), str(audio))
    return SoundFileSource(audio, getattr(audio, "name", "<stream>"))
