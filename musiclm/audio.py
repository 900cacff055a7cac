"""Reading, converting and writing audio. Everything else in musiclm sees float32 tensors [C, N] in [-1, 1].

Reading goes through soundfile (wav, flac, ogg/vorbis, mp3, ...); resampling is polyphase (scipy), so no
torchaudio is needed. Writing is atomic (musiclm.files): a hidden part file in the same folder, published
when complete, with the mode any new file gets (0666 less the umask).
"""

from __future__ import annotations

import functools
import io
import math
import warnings
from fractions import Fraction
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import torch
from scipy.signal import firwin, resample_poly
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.files import StdoutOutput, atomic_path

# Kept for callers that write by name: a part file's path, published with replace (musiclm.files).
atomic_write = atomic_path

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif")
# extension → the libsndfile format a file of that name must hold
AUDIO_FORMATS = {".wav": "WAV", ".flac": "FLAC", ".ogg": "OGG", ".oga": "OGG", ".mp3": "MP3"}
AUDIO_FORMATS.update({".aiff": "AIFF", ".aif": "AIFF"})


def audio_info(path: str | Path) -> sf._SoundFileInfo:
    try:
        return sf.info(str(path))
    except Exception as e:
        raise MusicLMError(f"{path}: unreadable audio ({_short(e)})") from None


def load_audio(
    source: str | Path | BinaryIO | bytes,
    sample_rate: int | None = None,
    channels: int | None = None,
    start: float = 0.0,
    duration: float | None = None,
) -> tuple[Tensor, int]:
    """Read audio → (wav [C, N] float32, sample rate). Resample to `sample_rate` and mix to `channels` if given.

    `start`/`duration` (seconds) read only part of the file, so long files need not be loaded whole.
    """
    name = source if isinstance(source, (str, Path)) else "<stream>"
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    try:
        with sf.SoundFile(source if not isinstance(source, Path) else str(source)) as f:
            sr = f.samplerate
            if sr <= 0:
                raise MusicLMError(f"{name}: invalid sample rate {sr}")
            first = int(round(start * sr))
            if first and f.seekable():
                f.seek(min(first, f.frames))
            frames = -1 if duration is None else int(round(duration * sr))
            data = f.read(frames=frames, dtype="float32", always_2d=True)  # [N, C]
    except MusicLMError:
        raise
    except Exception as e:
        raise MusicLMError(f"{name}: unreadable audio ({_short(e)})") from None
    if data.shape[0] == 0:
        raise MusicLMError(f"{name}: empty audio (no samples)")
    if not np.isfinite(data).all():
        raise MusicLMError(f"{name}: audio contains NaN or infinite samples")
    wav = torch.from_numpy(np.ascontiguousarray(data.T))
    if channels is not None:
        wav = convert_channels(wav, channels)
    if sample_rate is not None and sample_rate != sr:
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    return wav, sr


def convert_channels(wav: Tensor, channels: int) -> Tensor:
    """[C, N] → [channels, N]: average to mono, repeat mono, or average then repeat."""
    if wav.shape[0] == channels:
        return wav
    if channels == 1:
        return wav.mean(0, keepdim=True)
    if wav.shape[0] == 1:
        return wav.expand(channels, -1).clone()
    return wav.mean(0, keepdim=True).expand(channels, -1).clone()


@functools.lru_cache(maxsize=16)
def _polyphase_filter(up: int, down: int) -> np.ndarray:
    """resample_poly's own default low-pass (Kaiser window, beta 5, 10 zero crossings each side), designed once
    per ratio: designing it is most of the cost of resampling a block at an odd ratio (24000 → 8054 Hz: a
    240,000-tap filter, 40 ms a block, where filtering takes 7)."""
    rate = max(up, down)
    taps = firwin(2 * 10 * rate + 1, 1.0 / rate, window=("kaiser", 5.0))
    taps.setflags(write=False)  # shared by every call (resample_poly copies it before scaling)
    return taps


def resample_polyphase(x: np.ndarray, up: int, down: int) -> np.ndarray:
    """scipy's resample_poly along the last axis (zero padding outside the signal), with the filter cached."""
    return resample_poly(x, up, down, axis=-1, window=_polyphase_filter(up, down))


def resample(wav: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Polyphase resampling of [..., N]; output length is ceil(N * new_sr / orig_sr)."""
    if orig_sr == new_sr:
        return wav
    if orig_sr <= 0 or new_sr <= 0:
        raise MusicLMError(f"invalid sample rates {orig_sr} → {new_sr}")
    ratio = Fraction(new_sr, orig_sr)
    out = resample_polyphase(wav.detach().cpu().numpy(), ratio.numerator, ratio.denominator)
    length = math.ceil(wav.shape[-1] * new_sr / orig_sr)
    return torch.from_numpy(np.ascontiguousarray(out[..., :length], dtype=np.float32))


def save_audio(
    destination: str | Path | BinaryIO,
    wav: Tensor,
    sample_rate: int,
    format: str | None = None,
    subtype: str | None = None,
) -> None:
    """Write [C, N] audio. Paths are written atomically (an existing file is replaced); '-' writes to stdout.
    The format is `format`, else the path's extension; a `format` the extension contradicts is refused (a
    file named .mp3 holds MP3). Warns on clipping."""
    if wav.dim() != 2:
        raise MusicLMError(f"expected audio shaped [C, N], got {list(wav.shape)}")
    data = wav.detach().float().cpu().numpy().T
    peak = float(np.abs(data).max()) if data.size else 0.0
    if peak > 1.0:
        warnings.warn(f"audio clips (peak {peak:.2f} > 1.0); clipping to [-1, 1]", stacklevel=2)
        data = np.clip(data, -1.0, 1.0)
    if str(destination) == "-":
        buffer = io.BytesIO()
        sf.write(buffer, data, sample_rate, format=(format or "WAV").upper(), subtype=subtype)
        with StdoutOutput() as out:
            out.write(buffer.getvalue())
        return
    if not isinstance(destination, (str, Path)):
        sf.write(destination, data, sample_rate, format=(format or "WAV").upper(), subtype=subtype)
        return
    path = Path(destination)
    named = AUDIO_FORMATS.get(path.suffix.lower())
    fmt = (format or named or path.suffix.lstrip(".") or "wav").upper()
    if format and named and AUDIO_FORMATS.get("." + format.lower(), format.upper()) != named:
        raise MusicLMError(f"{path}: the name says {named} but the format asked for is {format.upper()}")
    with atomic_path(path) as part:
        sf.write(part, data, sample_rate, format=fmt, subtype=subtype)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
