"""Compress audio to .mlc files and back: the Python API behind `musiclm compress` / `musiclm decompress`.

    from musiclm.compress import compress, decompress, compress_bytes, decompress_bytes
    compress("song.flac", "song.mlc", bandwidth=6.0)        # streams: bounded memory for any length
    decompress("song.mlc", "song.wav")                      # original rate and channel count restored
    data = compress_bytes(wav, sample_rate=44100)           # wav [C, N] tensor (or the bytes of an audio file)
    wav, sr = decompress_bytes(data)                        # wav [C, N] at the original rate

Paths may be '-' for stdin/stdout. Files are written to a temporary name and renamed when complete, so a
failure never leaves a partial output behind. The layers below: `musiclm.codec.bitstream` (file format),
`musiclm.codec.streaming` (chunked encode/decode, resampling), `musiclm.codec.model` (the network).
"""

from __future__ import annotations

import io
import os
import re
import struct
import sys
import types
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
from torch import Tensor
from tqdm import tqdm

from musiclm.audio import atomic_write
from musiclm.codec import bitstream
from musiclm.codec.bitstream import Header, resampled_length
from musiclm.codec.streaming import decode_chunks, encode_chunks, receptive_frames, resampled_blocks
from musiclm.errors import MusicLMError

Source = str | Path | bytes | BinaryIO
DEFAULT_BANDWIDTH = 6.0  # kbps, when the codec offers it (EnCodec's default too)
CHUNK_SECONDS = 10.0
BLOCK_SAMPLES = 1 << 16  # audio read per soundfile call
PROGRESS_MIN_SECONDS = 5.0


# ---- codec and audio inputs ----------------------------------------------------------------------------
def load_codec(codec=None):
    """A Codec, a checkpoint directory, or None (the shipped codec) → Codec in eval mode."""
    from musiclm.codec.model import Codec

    if isinstance(codec, Codec):
        return codec.eval()
    return Codec.from_pretrained(codec)


def codec_prior(codec, n_q: int) -> np.ndarray | None:
    """Initial counts [n_q, card] for the range coder from the codec's EMA code usage in training
    (`cluster_size`); None for an untrained codec (nothing learned: the model starts uniform)."""
    from musiclm.codec.entropy import MAX_ENTROPY_CARD, prior_counts

    layers = codec.quantizer.layers[:n_q]
    if codec.card > MAX_ENTROPY_CARD or not all(bool(layer.inited) for layer in layers):
        return None
    usage = torch.stack([layer.cluster_size.detach().float().cpu() for layer in layers]).numpy()
    if not np.isfinite(usage).all() or (usage.sum(-1) <= 0).any():
        return None
    return prior_counts(usage)


class _AudioSource:
    """Sequential reader of an audio file or a tensor: rate, channels, length, and blocks [C, L] float32."""

    def __init__(self, audio: Source | Tensor, sample_rate: int | None = None):
        self.file = None
        if isinstance(audio, Tensor):
            if audio.dim() != 2 or sample_rate is None:
                raise MusicLMError(f"expected audio shaped [C, N] with a sample_rate, got {list(audio.shape)}")
            self.name, self.array = "<tensor>", audio.detach().float().cpu().numpy()
            self.sample_rate, (self.channels, self.frames) = int(sample_rate), self.array.shape
        else:
            self.name = "<stdin>" if str(audio) == "-" else ("<bytes>" if isinstance(audio, bytes) else str(audio))
            if str(audio) == "-":
                # libsndfile needs to seek, which a pipe cannot: stdin is read whole (compressed input).
                audio = io.BytesIO(sys.stdin.buffer.read())
            elif isinstance(audio, bytes):
                audio = io.BytesIO(audio)
            if isinstance(audio, io.BytesIO) and not audio.getbuffer().nbytes:
                raise MusicLMError(f"{self.name}: empty input (no data)")
            elif isinstance(audio, (str, Path)) and not Path(audio).is_file():
                raise MusicLMError(f"{audio}: no such file")
            try:
                self.file = sf.SoundFile(str(audio) if isinstance(audio, (str, Path)) else audio)
            except Exception as e:
                raise MusicLMError(f"{self.name}: unreadable audio ({_short(e)})") from None
            self.sample_rate, self.channels, self.frames = self.file.samplerate, self.file.channels, self.file.frames
        if self.frames <= 0:
            raise MusicLMError(f"{self.name}: empty audio (no samples)")
        if not 1 <= self.sample_rate <= bitstream.MAX_SAMPLE_RATE or not 1 <= self.channels <= bitstream.MAX_CHANNELS:
            raise MusicLMError(f"{self.name}: unsupported audio ({self.sample_rate} Hz, {self.channels} channels)")

    def blocks(self) -> Iterator[np.ndarray]:
        """Exactly `frames` samples in blocks [C, L]; a file that ends early is padded with silence."""
        done = 0
        while done < self.frames:
            n = min(BLOCK_SAMPLES, self.frames - done)
            if self.file is None:
                block = self.array[:, done : done + n]
            else:
                try:
                    block = self.file.read(n, dtype="float32", always_2d=True).T
                except Exception as e:
                    raise MusicLMError(f"{self.name}: unreadable audio ({_short(e)})") from None
                if block.shape[1] < n:
                    block = np.pad(block, ((0, 0), (0, n - block.shape[1])))
            if not np.isfinite(block).all():
                raise MusicLMError(f"{self.name}: audio contains NaN or infinite samples")
            done += n
            yield np.ascontiguousarray(block)

    def close(self) -> None:
        if self.file is not None:
            self.file.close()


# ---- encode ----------------------------------------------------------------------------------------------
def _encode_to(
    out: BinaryIO,
    src: _AudioSource,
    codec,
    bandwidth: float | None,
    entropy: bool,
    chunk_seconds: float,
    progress: bool | None,
) -> Header:
    if bandwidth is None:
        bandwidth = DEFAULT_BANDWIDTH if DEFAULT_BANDWIDTH in codec.bandwidths else max(codec.bandwidths)
    if bandwidth not in codec.bandwidths:
        raise MusicLMError(
            f"bandwidth {bandwidth:g} kbps not offered by this codec; choose one of "
            f"{[float(b) for b in codec.bandwidths]}"
        )
    if not 0.05 <= chunk_seconds <= 600:
        raise MusicLMError(f"chunk length {chunk_seconds} s out of range (0.05 .. 600)")
    header = Header(
        codec_name=codec.config.name,
        fingerprint=codec.fingerprint(),
        sample_rate=codec.sample_rate,
        hop_length=codec.hop_length,
        channels=codec.channels,
        orig_sample_rate=src.sample_rate,
        orig_channels=src.channels,
        num_samples=resampled_length(src.frames, src.sample_rate, codec.sample_rate),
        orig_num_samples=src.frames,
        n_q=codec.config.n_q_for_bandwidth(bandwidth),
        card=codec.card,
        bandwidth=float(bandwidth),
        chunk_frames=max(1, round(chunk_seconds * codec.frame_rate)),
        entropy=entropy,
    )
    try:
        header.validate()
    except bitstream.FormatError as e:
        raise MusicLMError(f"{src.name}: cannot be stored ({str(e).split(': ', 1)[-1]})") from None
    prior = None
    if entropy:
        from musiclm.codec.entropy import _check_card, prior_hash

        _check_card(codec.card)
        prior = codec_prior(codec, header.n_q)
        if prior is not None:
            header = Header(**{**header.__dict__, "prior": prior_hash(prior)})
    out.write(header.pack())
    blocks = resampled_blocks(src.blocks(), src.sample_rate, codec.sample_rate, src.frames, codec.channels)
    chunks = encode_chunks(codec, blocks, header.num_samples, header.chunk_frames, receptive_frames(codec), header.n_q)
    with _progress(header, progress, "compress") as bar:
        for i, codes in enumerate(chunks):
            bitstream.write_chunk(out, header, codes.numpy(), prior)
            bar.update(header.chunk_length(i) / header.frame_rate)
    return header


def compress(
    source: Source,
    destination: str | Path | BinaryIO,
    codec=None,
    bandwidth: float | None = None,
    entropy: bool = False,
    force: bool = False,
    chunk_seconds: float = CHUNK_SECONDS,
    progress: bool | None = None,
) -> Header:
    """Compress an audio file (path, '-', bytes or file object) to .mlc at `destination` (path, '-' or a
    binary file object). `bandwidth` in kbps (default 6 when offered); `entropy` adds range coding."""
    _check_destination(source, destination, force)
    src = _AudioSource(source)  # bad input fails before the codec loads
    try:
        codec = load_codec(codec)
        with _output(destination) as out:
            return _encode_to(out, src, codec, bandwidth, entropy, chunk_seconds, progress)
    finally:
        src.close()


def compress_bytes(
    audio: bytes | Tensor,
    codec=None,
    sample_rate: int | None = None,
    bandwidth: float | None = None,
    entropy: bool = False,
    chunk_seconds: float = CHUNK_SECONDS,
) -> bytes:
    """Audio file bytes, or wav [C, N] with its `sample_rate` → .mlc bytes."""
    src = _AudioSource(audio, sample_rate)
    out = io.BytesIO()
    _encode_to(out, src, load_codec(codec), bandwidth, entropy, chunk_seconds, False)
    return out.getvalue()


# ---- decode ----------------------------------------------------------------------------------------------
def check_codec(header: Header, codec) -> None:
    """Refuse to decode with a codec other than the one that encoded (the codes would mean nothing)."""
    if header.fingerprint != codec.fingerprint() or header.codec_name != codec.config.name:
        raise MusicLMError(
            f"this file was encoded with codec '{header.codec_name}' (weights {header.fingerprint}), but the "
            f"loaded codec is '{codec.config.name}' (weights {codec.fingerprint()}); pass --codec with the "
            "codec that encoded it"
        )
    same = (header.sample_rate, header.hop_length, header.channels, header.card)
    if same != (codec.sample_rate, codec.hop_length, codec.channels, codec.card) or header.n_q > codec.config.n_q:
        raise MusicLMError("corrupt .mlc header: its codec parameters disagree with the codec it names")


def _decoded_blocks(f: BinaryIO, header: Header, codec, progress: bool | None) -> Iterator[np.ndarray]:
    """Blocks [orig_channels, L] at the original rate, orig_num_samples in all; checks the file's end."""
    prior = codec_prior(codec, header.n_q) if header.prior else None
    if header.prior:
        from musiclm.codec.entropy import prior_hash

        if prior is None or prior_hash(prior) != header.prior:
            raise MusicLMError(
                f"this file was range-coded with code statistics {header.prior}, but the codec's "
                f"are {prior_hash(prior) if prior is not None else 'missing'} (same weights, other training "
                "statistics?); decode with the codec directory that encoded it"
            )

    def code_chunks() -> Iterator[Tensor]:
        with _progress(header, progress, "decompress") as bar:
            for i in range(header.num_chunks):
                yield torch.from_numpy(bitstream.read_chunk(f, header, i, prior))
                bar.update(header.chunk_length(i) / header.frame_rate)
        bitstream.check_end(f)

    blocks = decode_chunks(codec, code_chunks(), header.num_samples, header.chunk_frames, receptive_frames(codec))
    yield from resampled_blocks(
        blocks,
        header.sample_rate,
        header.orig_sample_rate,
        header.num_samples,
        header.orig_channels,
        header.orig_num_samples,
    )


def decompress(
    source: Source, destination: str | Path | BinaryIO, codec=None, force: bool = False, progress: bool | None = None
) -> Header:
    """Decode an .mlc file (path, '-', bytes or file object) to audio at `destination` (path: format from the
    extension, .wav if none; '-': WAV on stdout; or a binary file object, WAV)."""
    _check_destination(source, destination, force)
    fmt = _output_format(destination)
    with _input(source) as f:
        header = bitstream.read_header(f)
        codec = load_codec(codec)
        check_codec(header, codec)
        with _output(destination) as out:
            writer = _AudioWriter(out, fmt, header)
            try:
                for block in _decoded_blocks(f, header, codec, progress):
                    writer.write(block)
            finally:  # before the file under it closes (or is deleted, on failure)
                writer.close()
    return header


def decompress_bytes(data: bytes, codec=None) -> tuple[Tensor, int]:
    """.mlc bytes → (wav [C, N] float32 at the original rate, that rate)."""
    f = io.BytesIO(data)
    header = bitstream.read_header(f)
    codec = load_codec(codec)
    check_codec(header, codec)
    wav = np.concatenate(list(_decoded_blocks(f, header, codec, False)), axis=-1)
    return torch.from_numpy(wav), header.orig_sample_rate


def read_info(source: Source) -> Header:
    """The header of an .mlc file, without decoding it."""
    with _input(source) as f:
        return bitstream.read_header(f)


# ---- files, pipes, progress ----------------------------------------------------------------------------
class _input:
    def __init__(self, source: Source):
        self.source = source

    def __enter__(self) -> BinaryIO:
        s = self.source
        if isinstance(s, bytes):
            return io.BytesIO(s)
        if str(s) == "-":
            return sys.stdin.buffer
        if not isinstance(s, (str, Path)):
            return s
        if not Path(s).is_file():
            raise MusicLMError(f"{s}: no such file")
        self.file = open(s, "rb")  # noqa: SIM115 - closed in __exit__
        return self.file

    def __exit__(self, *exc) -> None:
        if getattr(self, "file", None):
            self.file.close()


class _output:
    """A binary stream for `destination`: stdout for '-', a temporary file renamed on success for a path."""

    def __init__(self, destination: str | Path | BinaryIO):
        self.destination = destination
        self.atomic = None

    def __enter__(self) -> BinaryIO:
        d = self.destination
        if str(d) == "-":
            return sys.stdout.buffer
        if not isinstance(d, (str, Path)):
            return d
        self.atomic = atomic_write(d)
        tmp = self.atomic.__enter__()
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes it private; the result should be like any new file
        self.file = open(tmp, "wb")  # noqa: SIM115 - closed in __exit__
        return self.file

    def __exit__(self, exc_type, exc, tb) -> None:
        if self.atomic is None:
            if str(self.destination) == "-":
                sys.stdout.buffer.flush()
            return
        self.file.close()
        self.atomic.__exit__(exc_type, exc, tb)  # renames on success, deletes the temporary file on failure


def _check_destination(source, destination, force: bool) -> None:
    if not isinstance(destination, (str, Path)) or str(destination) == "-":
        return
    path = Path(destination)
    if path.is_dir():
        raise MusicLMError(f"{path} is a folder; give a file name")
    if isinstance(source, (str, Path)) and str(source) != "-" and path.exists() and os.path.samefile(source, path):
        raise MusicLMError(f"{path}: input and output are the same file")
    if path.exists() and not force:
        raise MusicLMError(f"{path} exists; pass --force to overwrite it")


def _output_format(destination) -> str:
    if not isinstance(destination, (str, Path)) or str(destination) == "-":
        return "WAV"
    fmt = (Path(destination).suffix.lstrip(".") or "wav").upper()
    fmt = {"OGA": "OGG", "AIF": "AIFF"}.get(fmt, fmt)
    if fmt not in sf.available_formats():
        raise MusicLMError(f"{destination}: unknown audio format '.{fmt.lower()}'; use .wav, .flac or .ogg")
    return fmt


class _AudioWriter:
    """Writes blocks [C, L] through soundfile, or as a 16-bit WAV stream when the output cannot seek (a pipe):
    the header is written first from the known length, so no seek back is needed."""

    def __init__(self, out: BinaryIO, fmt: str, header: Header):
        self.out, self.peak = out, 0.0
        sr, C, N = header.orig_sample_rate, header.orig_channels, header.orig_num_samples
        seekable = out.seekable() if hasattr(out, "seekable") else False
        self.sf = sf.SoundFile(out, "w", sr, C, format=fmt) if seekable else None
        if self.sf is None:
            size = N * C * 2
            out.write(
                b"RIFF"
                + struct.pack("<I", min(36 + size, 0xFFFFFFFF))
                + b"WAVE"
                + b"fmt "
                + struct.pack("<IHHIIHH", 16, 1, C, sr, sr * C * 2, C * 2, 16)
                + b"data"
                + struct.pack("<I", min(size, 0xFFFFFFFF))
            )

    def write(self, block: np.ndarray) -> None:  # block [C, L]
        self.peak = max(self.peak, float(np.abs(block).max(initial=0.0)))
        data = np.clip(block, -1.0, 1.0).T
        if self.sf is not None:
            self.sf.write(data)
        else:
            self.out.write(np.round(data * 32767).astype("<i2").tobytes())

    def close(self) -> None:
        if self.sf is not None and not self.sf.closed:
            self.sf.close()
        if self.peak > 1.0 and sys.exc_info()[0] is None:
            warnings.warn(f"decoded audio clips (peak {self.peak:.2f} > 1.0); clipped to [-1, 1]", stacklevel=3)


def _progress(header: Header, progress: bool | None, what: str) -> tqdm:
    show = progress if progress is not None else header.duration >= PROGRESS_MIN_SECONDS
    return tqdm(
        total=round(header.num_frames / header.frame_rate, 2),
        unit="s",
        desc=what,
        disable=not show,
        leave=False,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )


def _short(e: Exception) -> str:
    text = re.sub(r"^Error opening .*?: ", "", str(e).strip())  # soundfile repeats the file object's repr
    return text.splitlines()[0][:200] if text else type(e).__name__


class _CallableModule(types.ModuleType):
    """`musiclm.compress(...)` calls `compress(...)` while `musiclm.compress` stays this module (the issue
    asks for that spelling; a function of the same name as the module would shadow it)."""

    def __call__(self, *args, **kwargs) -> Header:
        return compress(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["compress", "decompress", "compress_bytes", "decompress_bytes", "read_info", "check_codec", "load_codec"]
