"""Loading official EnCodec weights a user has on disk (filled in by the interop work)."""

from __future__ import annotations

from pathlib import Path

from musiclm.errors import MusicLMError


def load_encodec_th(path: Path):
    raise MusicLMError(f"{path}: loading original encodec .th checkpoints is not implemented yet")


def load_transformers_encodec(path: Path):
    raise MusicLMError(f"{path}: loading transformers EncodecModel directories is not implemented yet")
