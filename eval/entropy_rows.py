"""Bits a code, per codebook, that the .mlc range coder spends on a codec's codes of held-out clips.

    .venv/bin/python eval/entropy_rows.py checkpoints/codec --kbps 1.5 6 --clips 16
    .venv/bin/python eval/entropy_rows.py checkpoints/codec --manifest data/synth_test/manifest.jsonl

For each codebook: the adaptive model from the codec's learned prior (what version 3 spent on every row), the
same without the prior, and the row choice of version 4 (`entropy.adaptive_rows`: adaptive, or flat at
log2(card) bits, whichever costs less). Each row of each 10 s clip is range-coded on its own (the flush bytes
are left out), so the figures are the coder's real output, not an estimate.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import entropy
from musiclm.compress.common import codec_prior, load_codec

ROOT = Path(__file__).resolve().parent.parent
FLUSH_BYTES = 4  # every range-coded stream ends with these


def row_bits(row: np.ndarray, card: int, prior: np.ndarray | None, adaptive: bool) -> int:
    coded = entropy.encode_codes(row[None], card, None if prior is None else prior[None], [adaptive])
    return (len(coded) - FLUSH_BYTES) * 8


@torch.no_grad()
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path)
    p.add_argument("--manifest", type=Path, default=ROOT / "data/recorded/manifest.jsonl")
    p.add_argument("--kbps", type=float, nargs="+", default=[1.5, 6.0])
    p.add_argument("--clips", type=int, default=16)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = load_codec(args.codec)
    clips = [w for _, w in pick_clips(args.manifest, "test", args.clips, args.seconds, codec.sample_rate, 1, 0)]
    for kbps in args.kbps:
        n_q = codec.config.n_q_for_bandwidth(kbps)
        prior = codec_prior(codec, n_q)
        codes = [codec.encode(w[None], n_q=n_q)[0].numpy() for w in clips]
        frames = sum(c.shape[1] for c in codes)
        print(f"{kbps:g} kbps, {n_q} codebooks, {len(clips)} clips of {args.seconds:g} s: bits a code")
        print("codebook | adaptive, prior | adaptive, no prior | version 4's choice | flat rows")
        totals = np.zeros(3)
        for k in range(n_q):
            pk = None if prior is None else prior[k]
            with_prior = sum(row_bits(c[k], codec.card, pk, True) for c in codes)
            without = sum(row_bits(c[k], codec.card, None, True) for c in codes)
            chosen, flat = 0, 0
            for c in codes:
                adaptive = entropy.adaptive_rows(c[k][None], codec.card, None if pk is None else pk[None])[0]
                chosen += row_bits(c[k], codec.card, pk, adaptive)
                flat += not adaptive
            bits = np.array([with_prior, without, chosen]) / frames
            totals += bits
            print(f"{k:8d} | {bits[0]:.3f} | {bits[1]:.3f} | {bits[2]:.3f} | {flat}/{len(codes)}")
        print(f"    mean | {' | '.join(f'{t / n_q:.3f}' for t in totals)} | (bit-packed: {math.log2(codec.card):g})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
