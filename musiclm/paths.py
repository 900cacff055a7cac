"""Where the shipped checkpoints live: `checkpoints/` at the repository root (or $MUSICLM_CHECKPOINTS)."""

from __future__ import annotations

import os
from pathlib import Path

from musiclm.errors import MusicLMError


def checkpoints_dir() -> Path:
    env = os.environ.get("MUSICLM_CHECKPOINTS")
    if env:
        return Path(env)
    return Path(__file__).resolve().parent.parent / "checkpoints"


def _shipped(name: str) -> Path:
    path = checkpoints_dir() / name
    if not (path / "config.json").is_file():
        raise MusicLMError(
            f"the shipped {name} model is missing at {path}; pass a model directory explicitly "
            "or set MUSICLM_CHECKPOINTS"
        )
    return path


def default_codec_dir() -> Path:
    return _shipped("codec")


def default_lm_dir() -> Path:
    return _shipped("musiclm")
