"""Figures for the report (matplotlib, Agg backend, PNG files): spectrograms and training curves."""

from __future__ import annotations

import csv
import math
import re
from pathlib import Path

import numpy as np
import torch
from torch import Tensor


def _plt():
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    return plt


def log_spectrogram(wav: Tensor, sr: int, n_fft: int = 1024) -> np.ndarray:
    """wav [C, N] → dB magnitude [F, T] of the channel mean (hop n_fft / 4)."""
    x = wav.detach().float().cpu().mean(0)
    if x.numel() < n_fft:
        x = torch.nn.functional.pad(x, (0, n_fft - x.numel()))
    spec = torch.stft(x, n_fft, n_fft // 4, window=torch.hann_window(n_fft), return_complex=True).abs()
    return (20 * torch.log10(spec + 1e-5)).numpy()


def spectrograms(path: Path, panels: list[tuple[str, Tensor]], sr: int, title: str = "") -> None:
    """One PNG with a spectrogram per (label, wav [C, N] at sr), stacked, sharing one colour scale."""
    plt = _plt()
    specs = [log_spectrogram(w, sr) for _, w in panels]
    top = max(float(s.max()) for s in specs)
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 2.2 * len(panels)), squeeze=False, sharex=True)
    for ax, (label, _), spec in zip(axes[:, 0], panels, specs, strict=True):
        seconds = spec.shape[1] * 256 / sr
        im = ax.imshow(
            spec,
            origin="lower",
            aspect="auto",
            cmap="magma",
            vmin=top - 80,
            vmax=top,
            extent=(0, seconds, 0, sr / 2000),
        )
        ax.set_ylabel("kHz")
        ax.set_title(label, fontsize=10, loc="left")
    axes[-1, 0].set_xlabel("seconds")
    fig.colorbar(im, ax=axes[:, 0].tolist(), label="dB", shrink=0.8)
    if title:
        fig.suptitle(title, fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def read_metrics_csv(path: Path) -> dict[str, list[tuple[float, float]]]:
    """Lightning CSVLogger metrics.csv → {column: [(step, value), ...]} for numeric, non-empty cells."""
    series: dict[str, list[tuple[float, float]]] = {}
    with open(path, newline="") as f:
        for i, row in enumerate(csv.DictReader(f)):
            step = _num(row.get("step"))
            step = float(i) if step is None else step
            for key, cell in row.items():
                if key in ("step", "epoch") or key is None:
                    continue
                value = _num(cell)
                if value is not None:
                    series.setdefault(key, []).append((step, value))
    return series


def _num(cell) -> float | None:
    try:
        value = float(cell)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _group(name: str) -> tuple[str, str]:
    """'val/mel_1.5kbps' → ('val/mel', '1.5kbps'): per-bandwidth series share one panel."""
    m = re.match(r"^(.*)_([\d.]+kbps)$", name)
    if m:
        return m.group(1), m.group(2)
    if name.startswith("grad_norm/"):  # diagnostics: one panel for all of them
        return "grad_norm", name.split("/", 1)[1]
    return name, ""


def _priority(group: str) -> tuple:
    """Validation figures first, then training losses, then diagnostics."""
    rank = 0 if group.startswith("val") else 1 if group.startswith("train") or "loss" in group else 2
    return rank, "loss" not in group, group


def training_curves(csv_path: Path, png_path: Path, title: str = "", max_panels: int = 9) -> dict | None:
    """Plot each logged metric against step (losses first; per-bandwidth variants of a metric share a
    panel); returns {metric: last value} or None if the file has no numeric column."""
    series = read_metrics_csv(csv_path)
    if not series:
        return None
    panels: dict[str, list[tuple[str, str]]] = {}
    for name in series:
        group, label = _group(name)
        panels.setdefault(group, []).append((label, name))
    groups = sorted(panels, key=_priority)[:max_panels]
    cols = min(3, len(groups))
    rows = math.ceil(len(groups) / cols)
    plt = _plt()
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    for ax, group in zip(axes.ravel(), groups, strict=False):
        values_all = []
        for label, name in sorted(panels[group], key=lambda p: (_kbps(p[0]), p[0])):
            steps, values = zip(*series[name], strict=True)
            values_all += values
            ax.plot(steps, values, lw=1, marker="." if len(values) < 30 else None, label=label or None)
        if "loss" in group and min(values_all) > 0 and max(values_all) / min(values_all) > 20:
            ax.set_yscale("log")  # losses spanning decades read better on a log axis
        if len(panels[group]) > 1:
            ax.legend(fontsize=7)
        ax.set_title(group, fontsize=9)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("step", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=11)
    fig.tight_layout()
    png_path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path, dpi=80)
    plt.close(fig)
    return {name: values[-1][1] for name, values in series.items()}


def _kbps(label: str) -> float:
    try:
        return float(label.removesuffix("kbps"))
    except ValueError:
        return 0.0
