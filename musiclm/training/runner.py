"""One runner for every recipe: run directory, loggers, Lightning Trainer, resume.

    RUN_DIR/config.yaml        the resolved config (a resumed run reads this, not the --config file)
    RUN_DIR/checkpoints/last.ckpt  Lightning checkpoint (resume only)
    RUN_DIR/export/            the model as config.json + model.safetensors, refreshed with each checkpoint
    RUN_DIR/csv/version_N/metrics.csv, RUN_DIR/wandb/   logs (one CSV version per launch)
    RUN_DIR/samples/step_XXXXXXX/  audio + spectrograms

wandb runs offline unless WANDB_MODE says otherwise, so it never needs a network or an account; if wandb
fails in any way the run continues with CSV only.
"""

from __future__ import annotations

import math
import os
import warnings
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import yaml
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities.rank_zero import rank_zero_only

from musiclm.config import to_dict
from musiclm.errors import MusicLMError
from musiclm.paths import resolve_shipped
from musiclm.training.callbacks import LAST_CKPT, Checkpointer, StepSeed
from musiclm.training.config import OptimConfig, TrainerConfig, load_train_config

CONFIG_FILE = "config.yaml"


def prepare_run(
    cls: type, config_path: str | Path | None, run_dir: Path, resume: bool, force: bool, overrides: dict[str, Any]
) -> Any:
    """Resolve the config of a run and write it to RUN_DIR/config.yaml.

    A new run refuses a directory that already holds a checkpoint unless `force`; a resumed run reads the
    saved config (only `overrides`, e.g. max_steps/devices, may change it)."""
    saved = run_dir / CONFIG_FILE
    if resume:
        if not saved.is_file():
            raise MusicLMError(f"--resume: {saved} not found; start the run without --resume first")
        config = load_train_config(cls, saved, overrides)
        if not (run_dir / "checkpoints" / LAST_CKPT).is_file():
            warnings.warn(f"no checkpoint in {run_dir}/checkpoints yet: starting from step 0", stacklevel=2)
    else:
        if config_path is None:
            raise MusicLMError("--config is required (or --resume an existing run directory)")
        if (run_dir / "checkpoints" / LAST_CKPT).exists() and not force:
            raise MusicLMError(f"{run_dir} already holds a run; pass --resume to continue it or --force to start over")
        config = load_train_config(cls, resolve_shipped(config_path) if config_path else None, overrides)
    save_config(run_dir, config)
    return config


def save_config(run_dir: Path, config: Any) -> None:
    """RUN_DIR/config.yaml: the resolved config, what a resume reads."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))


def trainer_overrides(
    devices: int | None = None,
    num_nodes: int | None = None,
    strategy: str | None = None,
    max_steps: int | None = None,
    num_threads: int | None = None,
) -> dict[str, Any]:
    """CLI flags → {"trainer": {...}} overrides (None = keep the config's value)."""
    values = {
        "devices": devices,
        "num_nodes": num_nodes,
        "strategy": strategy,
        "max_steps": max_steps,
        "num_threads": num_threads,
    }
    trainer = {k: v for k, v in values.items() if v is not None}
    return {"trainer": trainer} if trainer else {}


def make_loggers(cfg: TrainerConfig, run_dir: Path, config_dict: dict) -> list:
    loggers: list = [CSVLogger(str(run_dir), name="csv")]
    if not cfg.wandb:
        return loggers
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    try:
        from lightning.pytorch.loggers import WandbLogger

        id_file = run_dir / "wandb_id.txt"
        run_id = id_file.read_text().strip() if id_file.is_file() else None
        logger = WandbLogger(
            project=cfg.wandb_project,
            save_dir=str(run_dir),
            id=run_id,
            resume="allow",
            name=run_dir.name,
            config=config_dict,
        )
        if rank_zero_only.rank == 0:  # other ranks get Lightning's no-op experiment
            id_file.write_text(str(logger.experiment.id) + "\n")  # starts wandb now: fail here, not mid-run
        loggers.append(logger)
    except Exception as e:  # no wandb, no disk space, a service that would not start: CSV is enough
        warnings.warn(f"wandb disabled ({type(e).__name__}: {e}); logging to CSV only", stacklevel=2)
    return loggers


def fit(
    module: pl.LightningModule,
    cfg: TrainerConfig,
    run_dir: Path,
    resume: bool,
    callbacks: list | None = None,
    grad_clip: float = 0.0,
    val_every: int = 0,
) -> pl.Trainer:
    """Train `module` (which provides its own train_dataloader) until cfg.max_steps."""
    torch.set_num_threads(cfg.num_threads)
    cuda = torch.cuda.is_available() and cfg.accelerator in ("auto", "gpu", "cuda")
    precision = cfg.precision if cfg.precision != "auto" else ("bf16-mixed" if cuda else "32-true")
    strategy: Any = cfg.strategy
    if cfg.strategy == "ddp" and getattr(module, "has_unused_parameters", False):
        # e.g. the discriminator before its warm-up ends takes no part in the loss
        strategy = "ddp_find_unused_parameters_true"
    checkpointer = Checkpointer(run_dir, cfg.checkpoint_every)
    loggers = make_loggers(cfg, run_dir, getattr(module, "config_dict", {}))
    trainer = pl.Trainer(
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=strategy,
        precision=precision,
        max_steps=cfg.max_steps,
        max_time=timedelta(minutes=cfg.max_minutes) if cfg.max_minutes > 0 else None,
        max_epochs=-1,
        logger=loggers,
        callbacks=[
            StepSeed(cfg.seed),
            TQDMProgressBar(refresh_rate=cfg.progress_every),
            *(callbacks or []),
            checkpointer,
        ],
        log_every_n_steps=cfg.log_every,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        default_root_dir=str(run_dir),
        gradient_clip_val=grad_clip or None,
        val_check_interval=val_every if val_every > 0 else None,
        check_val_every_n_epoch=None if val_every > 0 else 1,
        limit_val_batches=None if val_every > 0 else 0,
        num_sanity_val_steps=0,
        enable_model_summary=True,
    )
    ckpt = checkpointer.ckpt_path if resume and checkpointer.ckpt_path.is_file() else None
    # weights_only: a resume never unpickles arbitrary objects (the checkpoint holds tensors and plain data)
    trainer.fit(module, ckpt_path=str(ckpt) if ckpt else None, weights_only=True)
    return trainer


def lr_scheduler(optimizer: torch.optim.Optimizer, cfg: OptimConfig, max_steps: int):
    """Linear warm-up over cfg.warmup_steps, constant until cfg.decay_start, then (schedule "cosine") a
    cosine decay to min_lr_ratio at cfg.schedule_steps (or max_steps when that is 0).

    Changing these on `--resume --set optim....` takes effect from the restored step on, e.g. to anneal
    the last part of a run that started with a constant rate."""
    end = cfg.schedule_steps or max_steps
    start = max(cfg.warmup_steps, cfg.decay_start)

    def factor(step: int) -> float:
        if cfg.warmup_steps > 0 and step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        if cfg.schedule == "constant" or step < start:
            return 1.0
        progress = min(1.0, (step - start) / max(1, end - start))
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    if cfg.schedule not in ("constant", "cosine"):
        raise MusicLMError(f"optim.schedule: {cfg.schedule!r} is not 'constant' or 'cosine'")
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def adamw_with_decay_groups(module, optim: OptimConfig, max_steps: int, no_decay_names: tuple[str, ...] = ("embed",)):
    """AdamW + the schedule, as Lightning's configure_optimizers returns them. Weight decay on matrices only,
    not on norms, biases or parameters whose name contains one of `no_decay_names` (nanoGPT); frozen
    parameters (e.g. a frozen T5 text encoder) are left out."""
    decay, no_decay = [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        (decay if p.dim() >= 2 and not any(n in name for n in no_decay_names) else no_decay).append(p)
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": optim.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=optim.lr,
        betas=tuple(optim.betas),
    )
    scheduler = lr_scheduler(optimizer, optim, max_steps)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}
