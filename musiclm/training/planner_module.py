"""LightningModule that trains the planner (`musiclm.notes.model`) on the cached music21 corpus.

A step: `batch_size` windows drawn by `WindowMaker.draw` (transposed, re-timed, re-orchestrated; batch s is a
function of (seed, s), so a resumed run sees the same batches) → next-token cross-entropy on the body
tokens (the control prefix and header are given, never targets). Validation: the fixed windows of the
`valid` pieces, token perplexity and perplexity per note (the NLL of a window's tokens over its notes).

Runs through the shared runner (`musiclm.training.runner.fit`): checkpoints/last.ckpt to resume, export/ as
a planner directory (config.json + model.safetensors + vocab.json), CSV logs; `max_cpu_minutes` stops a
launch after that much CPU time (checkpointing first), for runs budgeted in CPU minutes on shared machines.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field

import lightning.pytorch as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from musiclm.config import to_dict
from musiclm.errors import MusicLMError
from musiclm.notes.corpus import Piece, WindowMaker, by_source, load_cache
from musiclm.notes.model import Planner, PlannerConfig
from musiclm.notes.tokens import NoteTokenizer
from musiclm.training.audio_dataset import StepSampler
from musiclm.training.config import OptimConfig, TrainerConfig
from musiclm.training.runner import adamw_with_decay_groups


@dataclass
class PlannerDataConfig:
    cache: str = "data/planner/cache"  # `train/train_planner.py --prepare` builds it
    batch_size: int = 8
    val_windows: int = 64  # the first windows of the valid pieces (0: no validation)


@dataclass
class PlannerTrainConfig:
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    data: PlannerDataConfig = field(default_factory=PlannerDataConfig)
    optim: OptimConfig = field(
        default_factory=lambda: OptimConfig(
            lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1, grad_clip=1.0, warmup_steps=100, schedule="cosine"
        )
    )
    trainer: TrainerConfig = field(
        default_factory=lambda: TrainerConfig(
            max_steps=2000, checkpoint_every=50, val_every=200, sample_every=0, num_threads=1, wandb=False
        )
    )
    # Limits of one launch (0: none): CPU time of the training process (all its threads; with one thread
    # "30 minutes of one CPU thread" on a shared machine, however long the wall clock runs), and wall time.
    max_cpu_minutes: float = 0.0
    max_wall_minutes: float = 0.0
    # a planner directory to start from (e.g. checkpoints/planner): its weights, and its architecture, which
    # must be the recipe's; the optimizer and schedule start afresh (training on more pieces, or longer)
    init_from: str | None = None


def collate(windows: list[tuple[list[int], int]], pad: int) -> dict[str, Tensor]:
    """[(ids, prefix length)] → ids [B, S] (padded with `pad`) and target_mask [B, S] (body tokens only)."""
    S = max(len(ids) for ids, _ in windows)
    out = torch.full((len(windows), S), pad, dtype=torch.long)
    mask = torch.zeros((len(windows), S), dtype=torch.bool)
    for b, (ids, n_prefix) in enumerate(windows):
        out[b, : len(ids)] = torch.as_tensor(ids)
        mask[b, n_prefix : len(ids)] = True
    return {"ids": out, "target_mask": mask}


class PlannerWindows(Dataset):
    """Item `step` → one batch of augmented training windows."""

    def __init__(self, pieces: list[Piece], maker: WindowMaker, batch_size: int, seed: int, rank: int):
        if not pieces:
            raise MusicLMError("no training pieces in the planner cache")
        self.groups, self.maker, self.batch_size = by_source(pieces), maker, batch_size
        self.seed, self.rank = seed, rank

    def __getitem__(self, step: int) -> dict[str, Tensor]:
        rng = random.Random(f"{self.seed}:{self.rank}:{step}")
        return collate([self.maker.draw(self.groups, rng) for _ in range(self.batch_size)], self.maker.tok.pad)


class HeldOut(Dataset):
    def __init__(self, windows: list[tuple[list[int], int, int]], batch_size: int, pad: int):
        self.batches = [windows[i : i + batch_size] for i in range(0, len(windows), batch_size)]
        self.pad = pad

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> dict[str, Tensor]:
        batch = self.batches[i]
        out = collate([(ids, n) for ids, n, _ in batch], self.pad)
        out["notes"] = torch.tensor(sum(n for _, _, n in batch))
        return out


class PlannerModule(pl.LightningModule):
    def __init__(self, config: PlannerTrainConfig, tok: NoteTokenizer | None = None):
        super().__init__()
        self.tok = tok or NoteTokenizer()
        if config.planner.vocab_size == 0:
            config.planner.vocab_size = len(self.tok)
        self.config = config
        self.config_dict = to_dict(config)
        self.model = Planner(config.planner)
        if config.init_from:
            self.model.load_state_dict(_start_from(config.init_from, config.planner, self.tok).state_dict())
        self.maker = WindowMaker(self.tok, config.planner.max_len)
        self._train: list[Piece] | None = None
        self._val_sums: Tensor | None = None

    def train_dataloader(self) -> DataLoader:
        pieces = load_cache(self.config.data.cache, splits=("train",))
        data = PlannerWindows(
            pieces, self.maker, self.config.data.batch_size, self.config.trainer.seed, self.global_rank
        )
        # the sampler reads global_step when iteration starts, i.e. after a checkpoint was restored
        return DataLoader(data, batch_size=None, sampler=StepSampler(lambda: self.global_step), num_workers=0)

    def val_dataloader(self) -> DataLoader:
        pieces = load_cache(self.config.data.cache, splits=("valid",))
        windows = self.maker.held_out(pieces)[: self.config.data.val_windows]
        return DataLoader(HeldOut(windows, self.config.data.batch_size, self.tok.pad), batch_size=None)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> Tensor:
        loss, count = self.model.loss(batch["ids"], batch["target_mask"])
        self.log_dict(
            {
                "train/loss": loss.detach(),
                "train/tokens": count.float(),
                "train/lr": self.optimizers().param_groups[0]["lr"],
            }
        )
        self.log("loss", loss.detach(), prog_bar=True, logger=False)
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_sums = torch.zeros(3, dtype=torch.float64, device=self.device)  # Σ NLL, tokens, notes

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        loss, count = self.model.loss(batch["ids"], batch["target_mask"])
        self._val_sums += torch.stack([loss.double() * count, count.double(), batch["notes"].double()])

    def on_validation_epoch_end(self) -> None:
        nll, tokens, notes = (float(x) for x in self._val_sums)
        self.log_dict(
            {"val/ppl": math.exp(nll / max(tokens, 1)), "val/ppl_note": math.exp(nll / max(notes, 1))},
            rank_zero_only=True,
        )

    def configure_optimizers(self):
        o = self.config.optim
        return adamw_with_decay_groups(self.model, o, self.config.trainer.max_steps, ("embed", "pos"))

    def export(self, directory, state_dict: dict[str, Tensor] | None = None) -> None:
        """The planner directory: config.json + model.safetensors (fp16) + vocab.json."""
        model = self.model
        if state_dict is not None:
            model = Planner(self.config.planner)
            prefix = "model."
            model.load_state_dict({k[len(prefix) :]: v for k, v in state_dict.items() if k.startswith(prefix)})
        model.save_pretrained(directory, self.tok.names)


def _start_from(directory: str, planner: PlannerConfig, tok: NoteTokenizer) -> Planner:
    """The planner in `directory`, refused unless it is the recipe's architecture and the tokenizer's vocabulary."""
    start = Planner.from_pretrained(directory, vocab=tok.names)
    mine, theirs = to_dict(planner), to_dict(start.config)
    diff = sorted(k for k in mine if k not in ("name", "dropout") and mine[k] != theirs.get(k))
    if diff:
        raise MusicLMError(f"init_from {directory}: its planner differs from the recipe's in {', '.join(diff)}")
    return start


class TimeLimit(pl.Callback):
    """Stop a launch after `cpu_minutes` of process CPU time or `wall_minutes` of wall time (0: no limit);
    the Checkpointer then saves at the end of training. Both are logged as train/cpu_min and train/wall_min."""

    def __init__(self, cpu_minutes: float = 0.0, wall_minutes: float = 0.0):
        self.cpu_minutes, self.wall_minutes = cpu_minutes, wall_minutes
        self.cpu0, self.wall0 = time.process_time(), time.time()

    def on_train_start(self, trainer, pl_module) -> None:
        self.cpu0, self.wall0 = time.process_time(), time.time()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        cpu, wall = (time.process_time() - self.cpu0) / 60, (time.time() - self.wall0) / 60
        pl_module.log_dict({"train/cpu_min": cpu, "train/wall_min": wall})
        if (self.cpu_minutes > 0 and cpu > self.cpu_minutes) or (self.wall_minutes > 0 and wall > self.wall_minutes):
            trainer.should_stop = True
