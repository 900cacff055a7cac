"""How much of the search's gain an encoder gives in one pass (the amortisation gap), on held-out targets.

For each clip of a targets folder (train/search_latents.py: audio, the latent the search ended on, and the
search's objective before and after), each codec's encoder codes the clip at the targets' codebook count;
printed: the latent's distance to the searched one (`latent_distance`), the search objective
(`codec.search.reconstruction_error`) of the codes, and the share of the search's improvement it recovers
(0 % = the encoder the targets were searched from, 100 % = the search itself).

    .venv/bin/python eval/searched_latent_gap.py data/search_latents_val checkpoints/codec runs/codec-enc9/export
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import load_file

from musiclm.codec import Codec
from musiclm.codec.search import reconstruction_error
from musiclm.training.latent_targets import latent_distance


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("targets", type=Path, help="a folder written by train/search_latents.py")
    parser.add_argument("codecs", nargs="+", help="codec directories (their decoder must be the targets')")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    meta = json.loads((args.targets / "targets.json").read_text())
    shards = [load_file(str(p)) for p in sorted(args.targets.glob("*.safetensors"))]
    audio = torch.cat([s["audio"] for s in shards]).float()
    latent = torch.cat([s["latent"] for s in shards]).float()
    start = torch.cat([s["error_start"] for s in shards])
    best = torch.cat([s["error_best"] for s in shards])
    print(f"{len(audio)} clips of {meta['seconds']} s, {meta['n_q']} codebooks, searched {meta['steps']} steps")
    print(f"search objective: the encoder searched from {start.mean():.3f}, the search {best.mean():.3f}")
    print("| codec | latent distance | search objective | gap recovered |")
    print("|---|---|---|---|")
    for directory in args.codecs:
        codec = Codec.from_pretrained(directory).eval()
        if codec.sound_fingerprint() != meta["sound_fingerprint"]:
            print(f"| {directory} | another decoder or codebooks: not comparable | | |")
            continue
        distances, errors = [], []
        with torch.no_grad():
            for wav, target in zip(audio, latent, strict=True):
                z = codec._encode_latent(wav[None], 0)
                distances.append(float(latent_distance(z, target[None])))
                decoded = codec.decode(codec.quantizer.encode(z, meta["n_q"]), wav.shape[-1])
                errors.append(float(reconstruction_error(decoded, wav[None])))
        error = sum(errors) / len(errors)
        recovered = (start.mean() - error) / (start.mean() - best.mean())
        print(f"| {directory} | {sum(distances) / len(distances):.4f} | {error:.3f} | {recovered:.0%} |")


if __name__ == "__main__":
    main()
