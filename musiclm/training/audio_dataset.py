"""Random audio crops for codec training, indexed by the global step so that a resumed run sees the same data.

A manifest is JSONL, one row per file: {"path": relative to the manifest's folder, "duration": seconds,
"split": "train" | "valid" | "test", ...}. The file list is resolved once when a run starts and saved in the
run directory (`files.json`): manifests that grow while a run trains do not change a resumed run's data.

Batch `step` is a pure function of (seed, step, rank): which files, where the crops start and their gains all
come from `numpy.random.default_rng([seed, step, rank])`. No iterator state needs saving; `StepSampler`
simply starts counting at the restored global step.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, Sampler

from musiclm.audio import load_audio
from musiclm.errors import MusicLMError
from musiclm.training.tone_melody import add_melody


@dataclass
class AudioFile:
    path: str  # absolute
    duration: float  # seconds
    group: int  # index of the manifest it came from (for per-manifest sampling weights)


def read_manifests(manifests: list[str | Path], split: str, min_duration: float = 0.0) -> list[AudioFile]:
    """Rows of `split` from each manifest, paths made absolute. A missing manifest is skipped with a warning
    (a corpus may still be being generated); the caller decides whether an empty list is an error."""
    files: list[AudioFile] = []
    for group, manifest in enumerate(manifests):
        manifest = Path(manifest)
        if not manifest.is_file():
            warnings.warn(f"manifest not found, skipped: {manifest}", stacklevel=2)
            continue
        for line in manifest.read_text().splitlines():
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                path, duration = row["path"], float(row["duration"])
            except (json.JSONDecodeError, KeyError, TypeError, ValueError):
                # A manifest being appended to may end in a partial line; skip it rather than stop a run.
                continue
            if row.get("split", "train") != split or duration < min_duration:
                continue
            files.append(AudioFile(str((manifest.parent / path).resolve()), duration, group))
    return files


def save_file_list(files: list[AudioFile], path: Path) -> None:
    path.write_text(json.dumps([f.__dict__ for f in files], indent=0) + "\n")


def load_file_list(path: Path) -> list[AudioFile]:
    return [AudioFile(**row) for row in json.loads(path.read_text())]


def sampling_probabilities(files: list[AudioFile], group_weights: list[float]) -> np.ndarray:
    """P(file): proportional to duration within a manifest; manifests weighted by `group_weights` when given
    (e.g. to over-sample a small set of real recordings), else by their total duration."""
    durations = np.array([f.duration for f in files], dtype=np.float64)
    if not group_weights:
        return durations / durations.sum()
    groups = np.array([f.group for f in files])
    probs = np.zeros_like(durations)
    for g in np.unique(groups):
        weight = group_weights[g] if g < len(group_weights) else 0.0
        mask = groups == g
        probs[mask] = weight * durations[mask] / durations[mask].sum()
    if probs.sum() <= 0:
        raise MusicLMError("manifest_weights leave no file with a positive probability")
    return probs / probs.sum()


class CropBatches(Dataset):
    """Item `step` → a batch of crops wav [B, C, N] (the whole batch, so a DataLoader uses batch_size=None)."""

    def __init__(
        self,
        files: list[AudioFile],
        sample_rate: int,
        channels: int,
        segment_seconds: float,
        batch_size: int,
        seed: int,
        rank: int = 0,
        gain_db: tuple[float, float] = (0.0, 0.0),
        group_weights: list[float] | None = None,
        tone_melody_share: float = 0.0,
    ):
        if not files:
            raise MusicLMError("no training audio: the manifests list no rows of the training split")
        self.files, self.sample_rate, self.channels = files, sample_rate, channels
        self.segment = int(round(segment_seconds * sample_rate))
        self.batch_size, self.seed, self.rank, self.gain_db = batch_size, seed, rank, gain_db
        self.probs = sampling_probabilities(files, group_weights or [])
        self.tone_melody_share = tone_melody_share

    def __len__(self) -> int:  # effectively unbounded; the sampler decides which steps are drawn
        return 2**62

    def __getitem__(self, step: int) -> Tensor:
        rng = np.random.default_rng([self.seed, int(step), self.rank])
        crops = [self._crop(rng) for _ in range(self.batch_size)]
        return torch.stack(crops)  # [B, C, N]

    def _crop(self, rng: np.random.Generator) -> Tensor:
        for _ in range(8):  # an unreadable file is skipped in favour of another draw (still deterministic)
            file = self.files[rng.choice(len(self.files), p=self.probs)]
            seconds = self.segment / self.sample_rate
            start = float(rng.uniform(0.0, max(0.0, file.duration - seconds)))
            gain = float(rng.uniform(*self.gain_db))
            try:
                wav, _ = load_audio(file.path, self.sample_rate, self.channels, start=start, duration=seconds)
            except MusicLMError:
                continue
            crop = _fit(wav, self.segment) * _gain(wav, gain)
            if self.tone_melody_share > 0 and rng.random() < self.tone_melody_share:
                crop = add_melody(crop, rng, self.sample_rate)
            return crop
        raise MusicLMError("8 unreadable audio files in a row; check the manifests")


def _fit(wav: Tensor, length: int) -> Tensor:
    """[C, n] → [C, length]: trim or zero-pad at the end."""
    if wav.shape[-1] >= length:
        return wav[:, :length]
    return torch.nn.functional.pad(wav, (0, length - wav.shape[-1]))


def _gain(wav: Tensor, gain_db: float) -> float:
    """Linear gain for `gain_db`, reduced so the crop's peak stays below 0.99 (never clip)."""
    peak = float(wav.abs().max()) if wav.numel() else 0.0
    gain = 10 ** (gain_db / 20)
    return min(gain, 0.99 / peak) if peak > 0 else gain


class StepSampler(Sampler[int]):
    """Yields start(), start()+1, ... forever; `start` is read when iteration begins (after a resume)."""

    def __init__(self, start: Callable[[], int]):
        self.start = start

    def __iter__(self) -> Iterator[int]:
        step = self.start()
        while True:
            yield step
            step += 1

    # No __len__: Lightning then treats the loader as endless and `max_steps` ends the run.


def fixed_clips(files: list[AudioFile], sample_rate: int, channels: int, seconds: float, count: int) -> Tensor:
    """`count` clips of `seconds` from the middle of the first files: the same audio for every sample log.

    Returns wav [count, C, N] (zero-padded when a file is shorter)."""
    clips = []
    length = int(round(seconds * sample_rate))
    for file in files:
        if len(clips) == count:
            break
        start = max(0.0, file.duration / 2 - seconds / 2)
        try:
            wav, _ = load_audio(file.path, sample_rate, channels, start=start, duration=seconds)
        except MusicLMError:
            continue
        clips.append(_fit(wav, length))
    if not clips:
        return torch.zeros(0, channels, length)
    return torch.stack(clips)
