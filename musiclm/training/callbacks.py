"""Callbacks shared by the codec and LM recipes: per-step seeding, checkpoints (periodic, on SIGTERM/SIGINT,
at the end) with an exported model directory, and periodic audio samples.

Exact resume rests on three things: the data of step s is a function of (seed, s) (see audio_dataset), the
global RNGs are re-seeded from (seed, s, rank) before every step (`StepSeed`), and the Lightning checkpoint
holds weights, buffers (EMA codebooks, balancer state) and optimizer state.
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.utilities import rank_zero_info

from musiclm.audio import save_audio

LAST_CKPT = "last.ckpt"


def step_seed(seed: int, step: int, rank: int) -> int:
    return (seed * 1_000_003 + step * 7919 + rank * 104_729) % (2**63 - 1)


class StepSeed(pl.Callback):
    """Re-seed torch's RNGs before each step, so dropout, dead-code restarts and condition dropout of step s
    are the same in a resumed run as in an uninterrupted one."""

    def __init__(self, seed: int):
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        torch.manual_seed(step_seed(self.seed, trainer.global_step, trainer.global_rank))


class Checkpointer(pl.Callback):
    """Every `every` steps, on SIGTERM/SIGINT and at the end: `checkpoints/last.ckpt` (to resume) and
    `export/` (the model via `pl_module.export(dir, state_dict)`). Both are replaced atomically, so a
    SIGKILL at any moment leaves the previous complete pair."""

    def __init__(self, run_dir: str | Path, every: int):
        self.run_dir, self.every = Path(run_dir), every
        self.stop_requested = False
        self._previous: dict[int, object] = {}
        self.last_saved_step = -1

    @property
    def ckpt_path(self) -> Path:
        return self.run_dir / "checkpoints" / LAST_CKPT

    # ---- signals ------------------------------------------------------------------------------------------
    def _handler(self, signum, frame) -> None:
        if self.stop_requested and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.stop_requested = True
        print(f"\nmusiclm: received {signal.Signals(signum).name}; checkpointing after this step", flush=True)

    def on_train_start(self, trainer, pl_module) -> None:
        # Installed after Lightning's own SIGTERM handler (which would abort without saving).
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread (e.g. some launchers); signals then stay Lightning's
                pass

    def teardown(self, trainer, pl_module, stage: str) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    # ---- saving -------------------------------------------------------------------------------------------
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        stop = trainer.strategy.reduce_boolean_decision(self.stop_requested, all=False)
        if stop or (self.every > 0 and step % self.every == 0):
            self.save(trainer, pl_module)
        if stop:
            trainer.should_stop = True

    def on_train_end(self, trainer, pl_module) -> None:
        if trainer.global_step != self.last_saved_step:
            self.save(trainer, pl_module)

    def save(self, trainer: pl.Trainer, pl_module) -> None:
        step = trainer.global_step
        tmp = self.ckpt_path.with_name(LAST_CKPT + ".tmp")
        if trainer.is_global_zero:
            tmp.parent.mkdir(parents=True, exist_ok=True)
        # weights_only=False: the optimizer and loop state go in too, so --resume continues exactly
        trainer.save_checkpoint(tmp, weights_only=False)  # collective: every rank takes part (FSDP gathers shards)
        state = trainer.strategy.lightning_module_state_dict()  # full weights, also from FSDP shards
        if trainer.is_global_zero:
            os.replace(tmp, self.ckpt_path)
            export_atomically(pl_module, self.run_dir / "export", state)
            (self.run_dir / "export" / "step.txt").write_text(f"{step}\n")
            rank_zero_info(f"checkpoint at step {step}: {self.ckpt_path}")
        trainer.strategy.barrier("musiclm_checkpoint")
        self.last_saved_step = step


def export_atomically(pl_module, directory: Path, state: dict | None = None) -> None:
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
    pl_module.export(tmp, state)
    if directory.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(directory, old)
    os.replace(tmp, directory)
    shutil.rmtree(old, ignore_errors=True)


class AudioSamples(pl.Callback):
    """Every `every` steps, `pl_module.make_samples()` → {name: wav [C, N]} is written to
    `samples/step_XXXXXXX/NAME.wav` with a spectrogram `NAME.png`, and sent to wandb when it is logging."""

    def __init__(self, run_dir: str | Path, every: int, sample_rate: int):
        self.run_dir, self.every, self.sample_rate = Path(run_dir), every, sample_rate

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every <= 0 or step % self.every != 0 or not trainer.is_global_zero:
            return
        was_training = pl_module.training
        pl_module.eval()
        try:
            with torch.no_grad():
                samples, metrics = pl_module.make_samples()
        finally:
            pl_module.train(was_training)
        if metrics:
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)
        folder = self.run_dir / "samples" / f"step_{step:07d}"
        for name, wav in samples.items():
            write_sample(folder, name, wav, self.sample_rate, trainer.loggers, step)


def write_sample(folder: Path, name: str, wav: torch.Tensor, sample_rate: int, loggers, step: int) -> None:
    """wav [C, N] → NAME.wav + NAME.png (log-magnitude spectrogram); also to any wandb logger."""
    folder.mkdir(parents=True, exist_ok=True)
    wav = wav.detach().float().cpu().clamp(-1, 1)
    save_audio(folder / f"{name}.wav", wav, sample_rate)
    image = folder / f"{name}.png"
    _plot_spectrogram(wav, sample_rate, image, title=f"{name} (step {step})")
    for logger in loggers:
        if type(logger).__name__ != "WandbLogger":
            continue
        try:
            import wandb

            logger.experiment.log(
                {
                    f"audio/{name}": wandb.Audio(wav.mean(0).numpy(), sample_rate=sample_rate),
                    f"spectrogram/{name}": wandb.Image(str(image)),
                },
                step=step,
            )
        except Exception as e:  # logging must never stop training
            rank_zero_info(f"wandb sample logging failed: {e}")


def _plot_spectrogram(wav: torch.Tensor, sample_rate: int, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = wav.mean(0)
    n_fft = 1024 if x.shape[-1] >= 1024 else 64  # short samples (tests) still get a picture
    x = torch.nn.functional.pad(x, (0, max(0, n_fft - x.shape[-1])))
    spec = torch.stft(
        x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), pad_mode="constant", return_complex=True
    ).abs()
    db = 20 * torch.log10(spec.clamp(min=1e-5))
    fig, ax = plt.subplots(figsize=(8, 3), dpi=80)
    ax.imshow(
        db.numpy(),
        origin="lower",
        aspect="auto",
        cmap="magma",
        vmin=float(db.max()) - 80,
        extent=(0, x.shape[-1] / sample_rate, 0, sample_rate / 2000),
    )
    ax.set_xlabel("time (s)")
    ax.set_ylabel("kHz")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
