"""Searched latents as targets for the encoder (`loss.latent`; written by train/search_latents.py).

A folder holds `targets.json` (the decoder and codebooks the search listened through: `sound_fingerprint`)
and shards `*.safetensors` of audio [K, C, N] with the latent the search ended on [K, D, T]. The encoder
learns to output those latents directly (amortised search: Marino et al. 2018, "Iterative Amortized
Inference"), which is only meaningful against the same decoder and codebooks: a folder made through another
decoder is refused.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from torch import Tensor

from musiclm.errors import MusicLMError


class LatentTargets:
    """Every (audio, searched latent) pair of the given folders, in memory; `batch(step)` draws `batch_size`
    of them, a pure function of (seed, step) like the audio crops, so a resumed run draws the same."""

    def __init__(self, folders: list[str | Path], sound_fingerprint: str, batch_size: int, seed: int):
        audio, latents = [], []
        for folder in map(Path, folders):
            meta_path = folder / "targets.json"
            if not meta_path.is_file():
                raise MusicLMError(f"{folder}: no targets.json (make targets with train/search_latents.py)")
            meta = json.loads(meta_path.read_text())
            if meta.get("sound_fingerprint") != sound_fingerprint:
                raise MusicLMError(
                    f"{folder}: searched through decoder and codebooks {meta.get('sound_fingerprint')}, "
                    f"this codec's are {sound_fingerprint}; the targets would ask for other sounds"
                )
            for shard in sorted(folder.glob("*.safetensors")):
                tensors = load_file(str(shard))
                audio.extend(tensors["audio"].float().unbind(0))
                latents.extend(tensors["latent"].float().unbind(0))
        if not audio:
            raise MusicLMError(f"no target shards in {[str(f) for f in folders]}")
        self.audio, self.latents = torch.stack(audio), torch.stack(latents)  # [K, C, N], [K, D, T]
        self.batch_size, self.seed = batch_size, seed

    def __len__(self) -> int:
        return len(self.audio)

    def batch(self, step: int) -> tuple[Tensor, Tensor]:
        """(audio [B, C, N], target latent [B, D, T]) for `step`."""
        rng = np.random.default_rng([self.seed, int(step), 11])
        index = torch.as_tensor(rng.choice(len(self), size=min(self.batch_size, len(self)), replace=False))
        return self.audio[index], self.latents[index]


def latent_distance(latent: Tensor, target: Tensor) -> Tensor:
    """Mean squared distance relative to the target's mean square: 0 at the target, 1 for a zero latent,
    whatever the latent's scale."""
    return (latent - target).pow(2).mean() / target.pow(2).mean().clamp_min(1e-8)
