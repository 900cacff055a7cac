"""Decoded audio out: the format an output's extension names, written block by block.

WAV is written here, 16-bit PCM with the header first (the length is known from the .mlc header, so nothing
is patched afterwards): it goes to a pipe, to stdout or to a part file through plain `write` calls, whose
errors (a full disk, a closed pipe) reach the caller as themselves. FLAC, Ogg/Vorbis and the other formats
go through libsndfile, which opens the part file by name; a Python file object is never handed to
soundfile, because an exception inside its write callback is printed and swallowed, not raised.
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import numpy as np
import soundfile as sf

from musiclm.audio import AUDIO_FORMATS  # an output's extension must be one of these (or none: WAV)
from musiclm.errors import MusicLMError


def output_format(destination) -> str:
    """'WAV' for '-' and file objects; for a path, the format its extension names (none: WAV). Unknown
    extensions are refused, so a file's name never lies about its contents."""
    if not isinstance(destination, (str, Path)) or str(destination) == "-":
        return "WAV"
    suffix = Path(destination).suffix.lower()
    if not suffix:
        return "WAV"
    fmt = AUDIO_FORMATS.get(suffix)
    if fmt is None or fmt not in sf.available_formats():
        known = ", ".join(s for s, f in AUDIO_FORMATS.items() if f in sf.available_formats())
        raise MusicLMError(f"{destination}: cannot write '{suffix}' audio; name the output {known} (or '-')")
    return fmt


def wav_header(sample_rate: int, channels: int, frames: int) -> bytes:
    """A 44-byte 16-bit PCM WAV header for `frames` samples (sizes saturate past 4 GiB, as streamers do)."""
    size = frames * channels * 2
    return (
        b"RIFF"
        + struct.pack("<I", min(36 + size, 0xFFFFFFFF))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, sample_rate, sample_rate * channels * 2, channels * 2, 16)
        + b"data"
        + struct.pack("<I", min(size, 0xFFFFFFFF))
    )


class AudioWriter:
    """Writes blocks [C, L] of float audio, clipped to [-1, 1] (with a warning at the end if it clipped).

    `out` has `write(bytes)`; for formats other than WAV it must be a part file (`out.part`, its name)."""

    def __init__(self, out, fmt: str, sample_rate: int, channels: int, frames: int):
        self.out, self.fmt, self.peak, self.sf = out, fmt, 0.0, None
        if fmt == "WAV":
            out.write(wav_header(sample_rate, channels, frames))
        else:
            part = getattr(out, "part", None)
            assert part, f"{fmt} is written by libsndfile to a named file"
            self.name, self.folder = str(getattr(out, "path", part)), os.path.dirname(part) or "."
            self.sf = self._call(sf.SoundFile, part, "w", sample_rate, channels, format=fmt)

    def write(self, block: np.ndarray) -> None:  # block [C, L]
        self.peak = max(self.peak, float(np.abs(block).max(initial=0.0)))
        data = np.clip(block, -1.0, 1.0).T
        if self.sf is None:
            self.out.write(np.round(data * 32767).astype("<i2").tobytes())
        else:
            self._call(self.sf.write, data)

    def close(self, warn: bool = True) -> None:
        if self.sf is not None and not self.sf.closed:
            self._call(self.sf.close)
        if warn and self.peak > 1.0:
            warnings.warn(f"decoded audio clips (peak {self.peak:.2f} > 1.0); clipped to [-1, 1]", stacklevel=3)

    def _call(self, fn, *args, **kwargs):
        """libsndfile reports a failed write with a bare error code: name the likely cause (a full disk)."""
        try:
            return fn(*args, **kwargs)
        except (sf.LibsndfileError, RuntimeError, AssertionError) as e:
            stats = os.statvfs(self.folder)
            reason = "disk full (no space left on device)" if stats.f_bavail == 0 else f"write failed ({e})"
            raise MusicLMError(f"{self.name}: {reason}") from None
