"""Opus (ffmpeg + libopus) as the codec baseline at a matched bitrate.

libopus does not go below about 6 kbps: asked for less, it still spends ~5.6 kbps on disk (Ogg
container included), so the report shows the bitrate each file really took, not the one requested.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

import torch
from torch import Tensor

from musiclm.audio import load_audio, save_audio
from musiclm.errors import MusicLMError


def ffmpeg_available() -> bool:
    if shutil.which("ffmpeg") is None:
        return False
    out = subprocess.run(["ffmpeg", "-hide_banner", "-encoders"], capture_output=True, text=True)
    return "libopus" in out.stdout


def opus_roundtrip(wav: Tensor, sample_rate: int, kbps: float, keep: str | Path | None = None) -> tuple[Tensor, float]:
    """Encode wav [C, N] with libopus at a constant `kbps` (CBR, `-vbr off`: the baseline the codec tables name,
    as in EnCodec's Table 3) and decode it back → (decoded [C, N], kbps on disk).

    `keep` copies the .opus file there (for the report's players)."""
    if not ffmpeg_available():
        raise MusicLMError("ffmpeg with libopus is not installed (apt-get install ffmpeg)")
    channels, n = wav.shape
    with tempfile.TemporaryDirectory(prefix="musiclm-opus-") as tmp:
        src, enc, dec = Path(tmp) / "in.wav", Path(tmp) / "x.opus", Path(tmp) / "out.wav"
        save_audio(src, wav.clamp(-1, 1), sample_rate, subtype="FLOAT")
        quiet = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y"]
        for cmd in (
            # without -vbr off libopus is VBR: 2026-12-01 found every "Opus CBR" row before then had been VBR
            quiet + ["-i", str(src), "-c:a", "libopus", "-b:a", f"{kbps * 1000:.0f}", "-vbr", "off", str(enc)],
            quiet + ["-i", str(enc), "-ar", str(sample_rate), "-ac", str(channels), "-c:a", "pcm_f32le", str(dec)],
        ):
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                raise MusicLMError(f"ffmpeg failed: {proc.stderr.strip()[-300:]}")
        actual_kbps = enc.stat().st_size * 8 / 1000 / (n / sample_rate)
        if keep is not None:
            shutil.copyfile(enc, keep)
        out, _ = load_audio(dec)
    # Opus decoders output whole frames; align the length with the input (ffmpeg removes pre-skip).
    if out.shape[-1] < n:
        out = torch.nn.functional.pad(out, (0, n - out.shape[-1]))
    return out[..., :n], actual_kbps
