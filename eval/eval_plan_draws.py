"""How many draws a plan takes, and how long, for one prompt over several seeds: `plan()` as `generate` calls it,
heard through the codec at the guide's codebooks (`generate.plan_listener`). The speed figure of
`eval_melody.py` times one seed; this says whether a slow plan is the prompt or that seed.

    .venv/bin/python eval/eval_plan_draws.py --planner checkpoints/planner@1 --planner runs/planner2/export@2

Each `--planner DIR@WEIGHT` is a planner directory and the pulse prior's weight (`planner.PULSE_WEIGHT`) it is
drawn with. Printed per planner: draws per seed, their mean, and the plan time's median and maximum (one thread).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from musiclm.codec.model import Codec
from musiclm.lm.generation import GUIDE_CODEBOOKS
from musiclm.notes import planner
from musiclm.notes.guide import codec_listener
from musiclm.paths import default_codec_dir


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="a calm chorale for strings in C major, 80 BPM")  # eval_melody's speed prompt
    p.add_argument("--planner", action="append", required=True, metavar="DIR@WEIGHT")
    p.add_argument("--seeds", type=int, default=10)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    listen = codec_listener(Codec.from_pretrained(default_codec_dir()).eval(), GUIDE_CODEBOOKS)
    for spec in args.planner:
        directory, _, weight = spec.partition("@")
        planner.PULSE_WEIGHT = float(weight or planner.PULSE_WEIGHT)  # plan() reads it at each call
        model = planner.load_planner(directory)
        draws, seconds = [], []
        for seed in range(args.seeds):
            start = time.perf_counter()
            draws.append(planner.plan(args.prompt, args.seconds, seed=seed, planner=model, listen=listen).attempts)
            seconds.append(time.perf_counter() - start)
        print(
            f"{spec}: draws {draws}, mean {np.mean(draws):.1f}; plan time median {np.median(seconds):.2f} s, "
            f"max {max(seconds):.2f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
