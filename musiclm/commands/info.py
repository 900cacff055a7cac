"""`musiclm info`: what a model directory or .mlc file holds."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from musiclm.errors import MusicLMError


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a codec/LM directory", description=__doc__)
    p.add_argument("path", nargs="?", help="model directory (default: the shipped codec)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclm.codec import Codec

    if args.path and Path(args.path).is_dir() and (Path(args.path) / "config.json").is_file():
        meta = json.loads((Path(args.path) / "config.json").read_text())
        if meta.get("model_type") not in ("musiclm-codec", "encodec"):
            print(json.dumps(meta, indent=2))
            return 0
    codec = Codec.from_pretrained(args.path)
    params = sum(p.numel() for p in codec.parameters())
    print(f"codec {codec.config.name}  fingerprint {codec.fingerprint()}")
    print(f"  sample rate {codec.sample_rate} Hz, {codec.channels} channel(s), frame rate {codec.frame_rate:g} Hz")
    print(f"  {codec.config.n_q} codebooks x {codec.card} entries, bandwidths {list(codec.bandwidths)} kbps")
    print(f"  parameters {params / 1e6:.2f} M")
    if params == 0:
        raise MusicLMError("empty model")
    return 0
