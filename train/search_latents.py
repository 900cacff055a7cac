"""Targets for an encoder that learns where the search lands (amortised analysis-by-synthesis).

`musiclm compress --search STEPS` finds, per clip, a latent whose codes the frozen decoder plays closer to the
input than the encoder's own (musiclm.codec.search; 100 steps: real-music note F1 0.455 → 0.483 at 6 kbps).
That costs ~80 s per 10 s (a faster rate reaches as far by the search's objective in 15 steps but keeps fewer
notes: musiclm.codec.search.SEARCH_LR). An encoder trained to output those latents directly would
give part of the gain at the encoder's speed: the amortisation gap of variational inference (Cremer et al.
2018, "Inference Suboptimality in Variational Autoencoders"; Marino et al. 2018, "Iterative Amortized Inference").

This script draws training crops (the codec recipe's own sampler: `CropBatches`, train split only, random gain,
a share of synthetic tone melodies), searches each and writes shards of (audio, searched latent) that
`data.latent_targets` of a codec recipe reads (`loss.latent`). Workers draw disjoint crops (crop i of worker w
is sampler item w + i * workers), so several processes may fill one folder; a stopped worker resumes after
its last complete shard.

    .venv/bin/python train/search_latents.py --codec checkpoints/codec --out data/search_latents \
        --worker 0 --workers 2 --minutes 60
    python train/search_latents.py --out data/search_latents_gpu --device cuda --batch 64 --shard-size 256 ...
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tqdm import tqdm

from musiclm.codec import Codec
from musiclm.codec.search import SEARCH_LR, SearchSettings, search_latent
from musiclm.training.audio_dataset import CropBatches, read_manifests

MANIFESTS = ["data/recorded/manifest.jsonl", "data/synth/manifest.jsonl"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--codec", default="checkpoints/codec")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--manifests", nargs="+", default=MANIFESTS)
    parser.add_argument("--manifest-weights", nargs="*", type=float, default=[0.5, 0.5])
    parser.add_argument("--seconds", type=float, default=4.0, help="crop length")
    parser.add_argument("--bandwidth", type=float, default=6.0, help="kbps the search quantizes at")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--lr", type=float, default=SEARCH_LR, help="the search's Adam learning rate")
    parser.add_argument("--shard-size", type=int, default=8, help="crops per shard file")
    parser.add_argument("--tone-melody-share", type=float, default=0.2)
    parser.add_argument("--worker", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--minutes", type=float, default=60.0, help="stop after the shard running at this time")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--batch", type=int, default=1, help="crops searched together (a GPU's throughput; the best is the batch's)"
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    if args.shard_size % args.batch:
        raise SystemExit(f"--shard-size {args.shard_size} must be a multiple of --batch {args.batch}")
    codec = Codec.from_pretrained(args.codec).eval().requires_grad_(False).to(args.device)
    n_q = codec.config.n_q_for_bandwidth(args.bandwidth)
    files = read_manifests(args.manifests, "train")
    crops = CropBatches(
        files,
        codec.config.sample_rate,
        codec.config.channels,
        args.seconds,
        1,
        args.seed,
        gain_db=(-10.0, 6.0),
        group_weights=args.manifest_weights,
        tone_melody_share=args.tone_melody_share,
    )
    search = SearchSettings(args.steps, args.lr)
    args.out.mkdir(parents=True, exist_ok=True)
    meta = {
        "sound_fingerprint": codec.sound_fingerprint(),  # the decoder and codebooks the targets were heard through
        "n_q": n_q,
        "steps": args.steps,
        "lr": args.lr,
        "seconds": args.seconds,
        "sample_rate": codec.config.sample_rate,
    }
    if search.cqt_weight:  # recorded only when on, so targets searched before the term existed still resume
        meta["cqt_weight"] = search.cqt_weight
    meta_path = args.out / "targets.json"
    # targets written before "lr" was recorded (twenty-second session) were searched at 0.01
    if meta_path.exists() and {"lr": 0.01, **json.loads(meta_path.read_text())} != meta:
        raise SystemExit(f"{meta_path} was written for another codec or search; use another --out")
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")

    shard = 0
    while (args.out / f"w{args.worker}_{shard:05d}.safetensors").exists():
        shard += 1
    deadline = time.monotonic() + 60 * args.minutes
    progress = tqdm(desc=f"worker {args.worker}", unit="crop")
    while time.monotonic() < deadline:
        audio, latents, before, after = [], [], [], []
        for first in range(0, args.shard_size, args.batch):
            items = [args.worker + (shard * args.shard_size + first + i) * args.workers for i in range(args.batch)]
            wav = torch.cat([crops[item] for item in items]).to(args.device)  # [batch, C, N]
            result = search_latent(codec, wav, n_q, search)
            audio.extend(wav.cpu().unbind(0))
            latents.extend(result.latent.cpu().unbind(0))
            before.extend(result.item_errors_start)  # each crop's own, searched item by item
            after.extend(result.item_errors_best)
            progress.update(args.batch)
            progress.set_postfix(error=f"{sum(after) / len(after):.3f}<{sum(before) / len(before):.3f}")
        path = args.out / f"w{args.worker}_{shard:05d}.safetensors"
        tensors = {
            "audio": torch.stack(audio).contiguous(),
            "latent": torch.stack(latents).contiguous(),
            "error_start": torch.tensor(before),
            "error_best": torch.tensor(after),
        }
        tmp = path.with_suffix(".tmp")
        save_file(tensors, str(tmp), metadata={k: str(v) for k, v in meta.items()})
        tmp.rename(path)  # a shard exists whole or not at all
        shard += 1


if __name__ == "__main__":
    main()
