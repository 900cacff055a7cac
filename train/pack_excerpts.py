"""Pack a small training corpus: short excerpts of a corpus's training rows, as FLAC with a manifest.

Why: a lent GPU machine takes the working tree and at most 64 MiB in all (the device tool's limit), not the
1.4 GB of data/. Many short excerpts from many rows keep the variety of the full corpus at a size that
travels: a decoder fine-tune sees every piece and instrument mix, only less of each.

    python train/pack_excerpts.py data/recorded/manifest.jsonl data/synth/manifest.jsonl \\
        --minutes 16 --seconds 4 --out data/gpu_excerpts

Excerpts are spread evenly over each manifest's training rows (in turn, a row at a time, at seeded random
offsets), with each manifest's share of the minutes given by its share of the training audio unless --shares
says otherwise. The manifest written lists every excerpt as split "train" with its source row's id.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from tqdm import tqdm

from musiclm.audio import load_audio, save_audio
from musiclm.training.audio_dataset import read_manifests


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("manifests", nargs="+")
    parser.add_argument("--out", required=True)
    parser.add_argument("--minutes", type=float, default=16.0)
    parser.add_argument("--seconds", type=float, default=4.0, help="length of each excerpt")
    parser.add_argument("--shares", type=float, nargs="*", default=None, help="per manifest; default by duration")
    parser.add_argument("--sample-rate", type=int, default=24000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rows = [read_manifests([m], "train", min_duration=args.seconds) for m in args.manifests]
    totals = np.array([sum(r.duration for r in group) for group in rows])
    shares = np.array(args.shares, dtype=float) if args.shares else totals / totals.sum()
    shares = shares / shares.sum()
    rng = np.random.default_rng(args.seed)
    out = Path(args.out)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    lines = []
    for group_index, (group, share) in enumerate(zip(rows, shares, strict=True)):
        count = int(round(args.minutes * 60 * share / args.seconds))
        order = rng.permutation(len(group))
        for i in tqdm(range(count), desc=Path(args.manifests[group_index]).parent.name, unit="excerpt"):
            row = group[order[i % len(order)]]
            start = float(rng.uniform(0, row.duration - args.seconds))
            wav, _ = load_audio(row.path, args.sample_rate, 1, start=start, duration=args.seconds)
            name = f"audio/{group_index}_{i:05d}.flac"
            save_audio(out / name, wav, args.sample_rate)
            source = f"{Path(row.path).name}@{start:.2f}"
            lines.append(
                {
                    "id": name,
                    "path": name,
                    "duration": wav.shape[-1] / args.sample_rate,
                    "split": "train",
                    "source": source,
                }
            )
    (out / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"{len(lines)} excerpts, {sum(r['duration'] for r in lines) / 60:.1f} min, {size / 2**20:.1f} MiB -> {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
