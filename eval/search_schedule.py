"""How fast does analysis-by-synthesis encoding get where it gets? The search objective reached by several
(steps, learning rate, schedule) settings of `musiclm.codec.search`, on training clips (real and rendered: the
settings are chosen here, so not on the held-out clips that score them).

    .venv/bin/python eval/search_schedule.py checkpoints/codec 100:0.01:constant 40:0.03:cosine 25:0.05:cosine

Each setting searches the same clips at `--kbps`; printed per setting: the mean share of the encoder's
objective (waveform L1 + log-magnitude and spectral convergence at 256-4096 points) that the search removes,
its smallest and largest per clip, and the seconds it took on one thread. The compressor's default is
`musiclm.codec.search.SEARCH_LR` at a constant rate.

Measured 2026-12-01 (3 + 3 clips of 4 s, 6 kbps, shipped codec): 100 steps at 0.01 remove 0.145 of the
objective; 40 at 0.03 0.146, at 0.08 0.169, at 0.15 0.174; 15 at 0.1 0.139, at 0.2 0.148; a cosine decay
loses to a constant rate (40 at 0.03: 0.124). The objective is not the measure, though: through the compressor
on 48 held-out real clips, 15 steps at 0.15 kept fewer notes than 100 at 0.01 (note F1 0.477 against 0.516,
SI-SNR 7.38 against 7.68 dB), so the default rate stayed 0.01. Score a setting with eval/codec_curve.py
--search STEPS --search-lr LR before changing it.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import Codec
from musiclm.codec.search import SCHEDULES, SearchSettings, search_latent

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth/manifest.jsonl"}


def setting(text: str) -> tuple[int, float, str]:
    try:
        steps, lr, schedule = text.split(":")
        steps, lr = int(steps), float(lr)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected STEPS:LR:SCHEDULE, e.g. 40:0.03:cosine") from None
    if steps < 1 or lr <= 0 or schedule not in SCHEDULES:
        raise argparse.ArgumentTypeError(f"{text!r}: steps ≥ 1, lr > 0, schedule one of {SCHEDULES}")
    return steps, lr, schedule


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path)
    p.add_argument("settings", nargs="+", type=setting, help="STEPS:LR:SCHEDULE")
    p.add_argument("--clips", type=int, default=4, help="clips per set (real, rendered), from the train split")
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--kbps", type=float, default=6.0)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval()
    n_q = codec.config.n_q_for_bandwidth(args.kbps)
    clips = [
        w[None]
        for manifest in SETS.values()
        for _, w in pick_clips(manifest, "train", args.clips, args.seconds, codec.sample_rate, 1, args.seed)
    ]
    print("| steps | lr | schedule | objective removed, mean | min | max | seconds |")
    print("|---|---|---|---|---|---|---|")
    for steps, lr, schedule in args.settings:
        start, removed = time.perf_counter(), []
        for wav in clips:
            result = search_latent(codec, wav, n_q, SearchSettings(steps, lr, schedule=schedule))
            removed.append(1 - result.error_best / result.error_start)
        seconds = time.perf_counter() - start
        print(
            f"| {steps} | {lr:g} | {schedule} | {sum(removed) / len(removed):.3f} | {min(removed):.3f} "
            f"| {max(removed):.3f} | {seconds:.0f} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
