"""One prompt planned without and with the pulse prior (`musiclm.notes.planner.pulse_prior`), as `musiclm
generate` plays it: for each, the plan's notes on the beat grid, then the onset envelope of the generated audio
with the tempo the estimator hears in it (`musiclm.data.analysis.estimate_tempo`) against the one asked.

    .venv/bin/python eval/figure_pulse_prior.py   # writes train/figures/pulse_prior.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib
import numpy as np
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # eval_finest's draw 38 (seed 38): heard at 46 bpm, not 105, before the prior; at 105 with it (2026-12-01)
    p.add_argument("--prompt", default="a recorder playing a piece, in B minor, around 105 beats per minute, 3/4")
    p.add_argument("--seed", type=int, default=38)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--out", type=Path, default=ROOT / "train/figures/pulse_prior.png")
    args = p.parse_args()
    torch.set_num_threads(2)

    from musiclm.data.analysis import ENVELOPE_RATE, estimate_tempo, onset_envelope, tempo_agrees
    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions
    from musiclm.lm.model import MusicLM
    from musiclm.notes import planner
    from musiclm.notes.midi import bar_quarters, beat_quarters, note_array

    model = MusicLM.from_pretrained().eval()
    sr = model.codec.sample_rate
    weights = (0.0, planner.PULSE_WEIGHT)
    fig, axes = plt.subplots(2, len(weights), figsize=(13, 6.5), sharex=True, height_ratios=(3, 2))
    for column, weight in enumerate(weights):
        planner.PULSE_WEIGHT = weight  # read by plan() at each call
        options = GenerationOptions(duration=args.seconds, seed=args.seed)
        notes = note_condition(model, [args.prompt], options)
        wav = model.generate([args.prompt], options, notes=notes.features, guide=notes.guide)[0].mean(0).numpy()
        c = notes.plans[0].controls
        beat = 60.0 / c.bpm
        bpm = estimate_tempo(wav, sr)
        roll, env = axes[0, column], axes[1, column]
        plan_notes = note_array(notes.scores[0])  # [M, 4]: onset s, duration s, pitch, program
        for onset, duration, pitch, _ in plan_notes:
            roll.add_patch(plt.Rectangle((onset, pitch - 0.4), duration, 0.8, color="tab:blue", alpha=0.8))
        roll.set_ylim(plan_notes[:, 2].min() - 2, plan_notes[:, 2].max() + 2)
        bar_beats = round(bar_quarters(c.meter) / beat_quarters(c.meter))
        for k, t in enumerate(np.arange(0, args.seconds, beat)):
            for ax in (roll, env):
                ax.axvline(t, color="0.3" if k % bar_beats == 0 else "0.75", lw=1.2 if k % bar_beats == 0 else 0.6)
        roll.set_title(f"pulse prior weight {weight:g}: the plan ({c.meter}, {c.bpm:g} bpm asked)", fontsize=10)
        roll.set_ylabel("MIDI pitch")
        e = onset_envelope(wav, sr)
        env.plot(np.arange(len(e)) / ENVELOPE_RATE, e, color="tab:red", lw=0.8)
        met = "met" if tempo_agrees(c.bpm, bpm) else "missed"
        env.set_title(f"generated audio's onset envelope: heard {bpm:.0f} bpm ({met})", fontsize=10)
        env.set_xlabel("seconds (grey: beats, dark: bars)")
    axes[0, 0].set_xlim(0, args.seconds)
    fig.suptitle(f"“{args.prompt}”, seed {args.seed}", fontsize=11)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
