"""The recipes behind `musiclm train codec|lm`: config → module → the shared runner."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from musiclm.training.callbacks import AudioSamples
from musiclm.training.config import CodecTrainConfig
from musiclm.training.runner import fit, prepare_run


def train_codec(config_path: str | Path | None, run_dir: str | Path, resume: bool = False, force: bool = False,
                overrides: dict[str, Any] | None = None, refresh_data: bool = False):
    """Train (or resume) a codec run in `run_dir`; returns the Lightning Trainer."""
    from musiclm.training.codec_module import build_codec_module

    run_dir = Path(run_dir)
    config = prepare_run(CodecTrainConfig, config_path, run_dir, resume, force, overrides or {})
    torch.manual_seed(config.trainer.seed)  # the initial weights (a resume overwrites them anyway)
    module = build_codec_module(config, run_dir, resume and not refresh_data)
    samples = AudioSamples(run_dir, config.trainer.sample_every, config.codec.sample_rate)
    return fit(module, config.trainer, run_dir, resume, callbacks=[samples])


def train_lm(config_path: str | Path | None, run_dir: str | Path, resume: bool = False, force: bool = False,
             overrides: dict[str, Any] | None = None):
    raise NotImplementedError("LM training lands with issue 7")
