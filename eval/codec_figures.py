"""Spectrograms of held-out clips through a codec and through Opus, one PNG per clip (look at them: a harmonic
line that vanishes is visible at a glance).

    .venv/bin/python eval/codec_figures.py --codec checkpoints/codec --out train/figures --clips 2

Panels, top to bottom: the reference, the codec at each `--bandwidths`, Opus CBR at each `--opus` (when
ffmpeg is present), and optionally a second codec (`--compare DIR`, e.g. the previous one) and the codec's
codes chosen by analysis by synthesis at 6 kbps (`--search STEPS`, musiclm.codec.search). Clips: the same
picks as eval/codec_curve.py (`pick_clips`, seed 0) from real music (test tracks of data/recorded) and from
renders of pieces never trained on (data/synth_test).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import Codec
from musiclm.codec.search import SearchSettings, search_codes
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.evaluation import plots
from musiclm.evaluation.opus import opus_roundtrip

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}


def through(codec: Codec, wav: torch.Tensor, kbps: float) -> torch.Tensor:
    n_q = codec.config.n_q_for_bandwidth(kbps)
    with torch.inference_mode():
        return codec.decode(codec.encode(wav[None], n_q=n_q))[0, :, : wav.shape[-1]]


def compressed(codec: Codec, wav: torch.Tensor, kbps: float, band_gains: bool) -> torch.Tensor:
    """Through the .mlc compressor (what `musiclm compress` users hear), with or without band gains."""
    data = compress_bytes(wav, codec, sample_rate=codec.sample_rate, bandwidth=kbps, band_gains=band_gains)
    return decompress_bytes(data, codec)[0]


def searched(codec: Codec, wav: torch.Tensor, kbps: float, search: SearchSettings) -> torch.Tensor:
    codes = search_codes(codec, wav[None], codec.config.n_q_for_bandwidth(kbps), search)
    with torch.inference_mode():
        return codec.decode(codes)[0, :, : wav.shape[-1]]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", type=Path, default=ROOT / "checkpoints/codec")
    p.add_argument("--compare", type=Path, default=None, help="a second codec to show at 6 kbps")
    p.add_argument("--compare-label", default=None, help="its panel's title (default: its config name)")
    p.add_argument("--out", type=Path, default=ROOT / "train/figures")
    p.add_argument("--clips", type=int, default=2, help="clips per set")
    p.add_argument("--seconds", type=float, default=6.0)
    p.add_argument("--bandwidths", type=float, nargs="+", default=[3.0, 6.0, 12.0])
    p.add_argument("--opus", type=float, nargs="*", default=[6.0, 12.0])
    p.add_argument("--search", type=int, default=0, help="add the codec at 6 kbps with this many search steps")
    p.add_argument("--prefix", default="spectrograms", help="files are PREFIX_{real,rendered}N.png")
    p.add_argument(
        "--mlc",
        type=float,
        nargs="*",
        default=None,
        metavar="KBPS",
        help="the codec through the compressor instead of the model: at 6 kbps without band gains, then with "
        "them at each KBPS (default 6)",
    )
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval()
    other = Codec.from_pretrained(args.compare).eval() if args.compare else None
    sr = codec.sample_rate
    for name, manifest in SETS.items():
        for i, (label, wav) in enumerate(pick_clips(manifest, "test", args.clips, args.seconds, sr, 1, seed=0)):
            panels = [(f"reference: {label}", wav)]
            panels += [(f"{codec.config.name} {kbps:g} kbps", through(codec, wav, kbps)) for kbps in args.bandwidths]
            if args.mlc is not None:
                panels.append((".mlc 6 kbps, no band gains", compressed(codec, wav, 6.0, False)))
                panels += [
                    (f".mlc {kbps:g} kbps, band gains", compressed(codec, wav, kbps, True))
                    for kbps in args.mlc or [6.0]
                ]
            if other is not None:
                panels.append((f"{args.compare_label or other.config.name} 6 kbps", through(other, wav, 6.0)))
            if args.search:
                search = SearchSettings(steps=args.search)
                title = f"{codec.config.name} 6 kbps, --search {args.search} ({search.label})"
                panels.append((title, searched(codec, wav, 6.0, search)))
            for kbps in args.opus:
                try:
                    panels.append((f"Opus CBR {kbps:g} kbps", opus_roundtrip(wav, sr, kbps)[0]))
                except Exception as e:  # no ffmpeg: the codec panels still tell
                    print(f"Opus {kbps:g} kbps skipped: {e}", file=sys.stderr)
            path = args.out / f"{args.prefix}_{name}{i}.png"
            plots.spectrograms(path, panels, sr, title=f"{name} music, held out")
            print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
