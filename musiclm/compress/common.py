"""What encoding and decoding share: the codec (loading, its range-coder prior, the check that a file and a
codec belong together), the output stream for a destination, and the progress bar."""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from tqdm import tqdm

from musiclm.codec.bitstream import Header
from musiclm.errors import MusicLMError
from musiclm.files import AtomicOutput, StdoutOutput

PROGRESS_MIN_SECONDS = 5.0  # shorter files get no progress bar unless asked


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


def check_destination(source, destination, force: bool) -> None:
    """Refuse before any work: a folder, the input itself, or an existing file without `force`."""
    if not isinstance(destination, (str, Path)) or str(destination) == "-":
        return
    path = Path(destination)
    if path.is_dir():
        raise MusicLMError(f"{path} is a folder; give a file name")
    if isinstance(source, (str, Path)) and str(source) != "-" and path.exists() and os.path.samefile(source, path):
        raise MusicLMError(f"{path}: input and output are the same file")
    if path.exists() and not force:
        raise MusicLMError(f"{path} exists; pass --force to overwrite it")


class _Unowned:
    """A caller's binary file object: written to, left open."""

    def __init__(self, f: BinaryIO):
        self.f = f

    def write(self, data: bytes) -> int:
        return self.f.write(data)


@contextmanager
def open_output(destination, force: bool):
    """'-' → stdout; a path → a part file published on success (replacing a file only with `force`); a
    binary file object → itself. What it yields has `write(bytes)`; a path's also has `part` (its name)."""
    if str(destination) == "-":
        with StdoutOutput() as out:
            yield out
    elif isinstance(destination, (str, Path)):
        with AtomicOutput(destination, replace=force) as out:
            yield out
    else:
        yield _Unowned(destination)


def progress_bar(header: Header, progress: bool | None, what: str) -> tqdm:
    show = progress if progress is not None else header.duration >= PROGRESS_MIN_SECONDS
    # the total summed as the chunks update it: a rounded total fell short of the sum ("[00:01<-00:00]")
    total = sum(header.chunk_length(i) / header.frame_rate for i in range(header.num_chunks))
    return tqdm(
        total=total,
        unit="s",
        desc=what,
        disable=not show,
        leave=False,
        file=sys.stderr,
        bar_format="{desc}: {percentage:3.0f}%|{bar}| {n:.0f}/{total:.0f} s audio [{elapsed}<{remaining}]",
    )
