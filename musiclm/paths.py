"""Where the shipped models, recipes and tokenizer live, installed or not.

A wheel carries them as package data in `musiclm/assets/` and they are found with `importlib.resources`:

    musiclm/assets/checkpoints/{codec,musiclm}/   the shipped models (`checkpoints/` in the repository)
    musiclm/assets/configs/{codec,lm}/*.yaml      the training recipes (`configs/`)
    musiclm/assets/tokenizer/captions.model       the SentencePiece model (`tokenizer/captions.model`)

In the repository those three entries are relative symlinks to the top-level folders that the READMEs and
recipes name, so a source checkout (editable install) reads the same files, and building a wheel copies the
files the links point to. Where a checkout has no symlinks (git's core.symlinks=false) the top-level folders
are used directly. $MUSICLM_CHECKPOINTS overrides the checkpoints folder.
"""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path

from musiclm.errors import MusicLMError

SOURCE_ROOT = Path(__file__).resolve().parent.parent  # the repository root, for a source checkout
SHIPPED = ("checkpoints", "configs", "tokenizer")  # top-level names that `resolve_shipped` maps


def _asset(*parts: str) -> Path:
    """A shipped file or folder, e.g. _asset("configs", "lm", "finetune.yaml"): the package data when it
    exists, else the same path under the source tree (it may not exist either: callers check)."""
    package = resources.files("musiclm")
    if isinstance(package, Path):  # an installed or source package on disk (not a zip import)
        packaged = package.joinpath("assets", *parts)
        if packaged.exists():
            return packaged
    return SOURCE_ROOT.joinpath(*parts)


def checkpoints_dir() -> Path:
    env = os.environ.get("MUSICLM_CHECKPOINTS")
    if env:
        return Path(env)
    return _asset("checkpoints")


def configs_dir() -> Path:
    """The shipped training recipes: codec/*.yaml, lm/*.yaml (lm/finetune.yaml is `musiclm finetune`'s)."""
    return _asset("configs")


def default_tokenizer() -> Path:
    """The SentencePiece model built from the corpus captions (the shipped LM carries a copy of it)."""
    return _asset("tokenizer", "captions.model")


def resolve_shipped(path: str | Path) -> Path:
    """`path` itself when it exists or is absolute; else, when it is relative and names something shipped
    ("configs/lm/small.yaml", "tokenizer/captions.model", "checkpoints/codec"), the shipped one; else `path`
    unchanged, for the caller to report missing. So the paths the READMEs give work from any directory."""
    path = Path(path)
    if path.exists() or path.is_absolute() or not path.parts or path.parts[0] not in SHIPPED:
        return path
    rest = path.parts[1:]
    shipped = checkpoints_dir().joinpath(*rest) if path.parts[0] == "checkpoints" else _asset(*path.parts)
    return shipped if shipped.exists() else path


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
