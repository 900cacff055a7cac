"""Real-time factor of the whole compressor path on one thread: `compress_bytes` and `decompress_bytes` of one
held-out clip (codec network, level analysis by synthesis, range coding, resampling), best of --repeats after a
warm-up call, in this process.

    .venv/bin/python eval/compress_speed.py                       # the shipped codec, 1.5 / 6 / 12 kbps
    .venv/bin/python eval/compress_speed.py --codec DIR --kbps 6 --repeats 9

Issue 11 asks for 20x real time or more each way. Run it on an idle machine; the median beside the best shows
how noisy the machine was.
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np
import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import bitstream
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.compress.common import load_codec

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", type=Path, default=None, help="codec directory (default: the shipped codec)")
    p.add_argument("--manifest", type=Path, default=ROOT / "data/synth_test/manifest.jsonl")
    p.add_argument("--kbps", type=float, nargs="+", default=[1.5, 6.0, 12.0])
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--band-gains",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="force band gains on or off (default: the compressor's choice, on at 6 kbps and up)",
    )
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = load_codec(args.codec)
    sr = codec.sample_rate
    ((name, wav),) = pick_clips(args.manifest, "test", 1, args.seconds, sr, codec.channels, seed=0)
    print(f"{name}, {args.seconds:g} s at {sr} Hz, one thread, best (median) of {args.repeats}")
    for kbps in args.kbps:
        data = compress_bytes(
            wav, codec, sample_rate=sr, bandwidth=kbps, band_gains=args.band_gains
        )  # warm-up: context, caches
        decompress_bytes(data, codec)
        encode, decode = [], []
        for _ in range(args.repeats):
            start = time.perf_counter()
            data = compress_bytes(wav, codec, sample_rate=sr, bandwidth=kbps, band_gains=args.band_gains)
            encode.append(time.perf_counter() - start)
            start = time.perf_counter()
            decompress_bytes(data, codec)
            decode.append(time.perf_counter() - start)
        version = bitstream.read_header(io.BytesIO(data)).version
        rt = [args.seconds / np.array(times) for times in (encode, decode)]
        print(
            f"{kbps:g} kbps (.mlc v{version}, {len(data) * 8 / args.seconds / 1000:.2f} kbps on disk): "
            f"encode {rt[0].max():.1f}x ({np.median(rt[0]):.1f}x), decode {rt[1].max():.1f}x ({np.median(rt[1]):.1f}x)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
