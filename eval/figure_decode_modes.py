"""The same plan decoded three ways beside its render: the LM's codes drawn (`--decode sample`), the mean
decode (`--decode mean`, what the default `auto` plays with a guide), and the render through the codec at the
LM's codebooks; spectrograms below 3 kHz.

    .venv/bin/python eval/figure_decode_modes.py   # writes train/figures/decode_mean_vs_drawn.png
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

from musiclm.dsp import stft  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prompt", default="a calm piece in D minor on strings, tempo 80, 4/4")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--out", type=Path, default=ROOT / "train/figures/decode_mean_vs_drawn.png")
    args = p.parse_args()
    torch.set_num_threads(2)

    from musiclm.generate import note_condition
    from musiclm.lm.generation import GenerationOptions, generate_for_decoding
    from musiclm.lm.model import MusicLM
    from musiclm.notes.guide import render_notes

    model = MusicLM.from_pretrained().eval()
    codec, sr = model.codec, model.codec.sample_rate
    options = GenerationOptions(duration=args.seconds, seed=args.seed, decode="mean")
    notes = note_condition(model, [args.prompt], options)
    codes, latents = generate_for_decoding(model, [args.prompt], options, notes=notes.features, guide=notes.guide)
    render = torch.from_numpy(render_notes(notes.scores[0], args.seconds, sr))[None, None]
    with torch.inference_mode():
        ways = {
            "reference render": render[0, 0],
            "LM codes drawn (--decode sample)": codec.decode(codes)[0, 0],
            "LM codes, mean decode": codec.decode_latent(latents[0][None])[0, 0],
            f"render through the codec, {model.n_q} codebooks": codec.decode(codec.encode(render, n_q=model.n_q))[0, 0],
        }
    fig, axes = plt.subplots(len(ways), 1, figsize=(11, 11), sharex=True)
    for ax, (name, x) in zip(axes, ways.items(), strict=True):
        mag = stft(x[: render.shape[-1]], 2048, 256)[0].abs()
        db = 20 * torch.log10(mag + 1e-5)
        db = db - db.max()
        hz = np.linspace(0, sr / 2, mag.shape[0])
        keep = hz <= 3000
        ax.pcolormesh(np.arange(mag.shape[1]) * 256 / sr, hz[keep], db[keep].numpy(), vmin=-80, vmax=0, cmap="magma")
        ax.set_title(name)
        ax.set_ylabel("Hz")
    axes[-1].set_xlabel("s")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
