"""A minutes-long proxy for "does this codec recipe keep sines between the A440 pitches": train a frame
autoencoder from scratch for a few hundred steps, then play it steady sines off the grid.

    .venv/bin/python eval/codec_sine_proxy.py --steps 600 --data corpus --losses mel
    .venv/bin/python eval/codec_sine_proxy.py --steps 600 --data corpus --losses mel l1 complex
    .venv/bin/python eval/codec_sine_proxy.py --steps 600 --data corpus --losses mel --rvq

--data corpus: 1 s crops of the training manifests with tone melodies in 30 % (as the codec recipes);
--data tones: random 1-4 partial tones, 100 Hz-4 kHz. --losses picks from mel (multi-scale log-mel + linear
mel, weight 1), l1 (time L1, 1), complex (compressed complex spectrum, 2); plain weighted sum, no
balancer. --rvq puts the 24 × 1024 residual quantizer (quantizer dropout, commitment 1) between them.
Every quarter of the run the autoencoder (no quantizer) plays 0.1-amplitude sines at 9 frequencies between
grid pitches, 155 Hz-3.7 kHz, and three figures are printed per sine:
- band: output energy within a semitone of the sine against the input's, dB (is the partial there);
- level: all output energy against the input's, dB (a noise wash at the right level scores 0 here);
- SI-SNR, dB (is it there with the input's phase).
Measured 2026-11-30 (train/README.md, "Why the bands die"): a recipe whose band figures fall with steps drops
those sines in the full run too.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musiclm.codec.framenet import FrameDecoder, FrameEncoder, FrameNetConfig
from musiclm.codec.quantizer import ResidualVectorQuantizer
from musiclm.evaluation.tones import band_level_db
from musiclm.training.audio_dataset import CropBatches, read_manifests
from musiclm.training.losses import CompressedComplexSTFTLoss, MultiScaleMelLoss

ROOT = Path(__file__).resolve().parent.parent
MANIFESTS = [ROOT / "data/recorded/manifest.jsonl", ROOT / "data/synth/manifest.jsonl"]
SR = 24000
PROBES = (155.0, 311.0, 452.9, 640.0, 906.0, 1281.0, 1812.0, 2637.0, 3700.0)  # all between A440 pitches


def random_tones(rng: np.random.Generator, batch: int, n: int) -> torch.Tensor:
    t = np.arange(n) / SR
    out = []
    for _ in range(batch):
        x = np.zeros(n)
        for _ in range(rng.integers(1, 4)):
            f, a = 2 ** rng.uniform(np.log2(100), np.log2(4000)), rng.uniform(0.02, 0.2)
            for k in range(1, int(rng.integers(1, 5)) + 1):
                if k * f < SR / 2.2:
                    x += a / k * np.sin(2 * np.pi * k * f * t + rng.uniform(0, 2 * np.pi))
        out.append(x / max(1.0, np.abs(x).max() / 0.9))
    return torch.tensor(np.stack(out), dtype=torch.float32)[:, None]


def probe(encoder, decoder) -> list[tuple[float, float, float]]:
    """(band dB, level dB, SI-SNR dB) per probe sine, through the autoencoder without quantizer."""
    results = []
    t = np.arange(2 * SR) / SR
    for f in PROBES:
        x = torch.tensor(0.1 * np.sin(2 * np.pi * f * t), dtype=torch.float32)[None, None]
        with torch.no_grad():
            y = decoder(encoder(x))[0, 0, : 2 * SR].numpy()
        ref, est = x[0, 0, SR // 2 : -SR // 2].numpy(), y[SR // 2 : -SR // 2]
        band = band_level_db(y[: 2 * SR], x[0, 0].numpy(), f, SR)  # its middle half is the [SR/2, 3SR/2) above
        level = est.std() / ref.std()
        scale = (est @ ref) / (ref @ ref)
        si_snr = (scale * ref) @ (scale * ref) / (np.sum((est - scale * ref) ** 2) + 1e-12)
        results.append((band, *(10 * np.log10(v + 1e-12) for v in (level**2, si_snr))))
    return results


def term(name: str, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """One reconstruction loss at its --losses weight."""
    if name == "mel":
        return MEL(y, x)
    if name == "l1":
        return F.l1_loss(y, x)
    return 2.0 * COMPLEX(y, x)


MEL = MultiScaleMelLoss(SR, (2048, 1024, 512, 256, 128, 64), 64)
COMPLEX = CompressedComplexSTFTLoss((2048, 512, 128))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--data", choices=("corpus", "tones"), default="corpus")
    p.add_argument("--losses", nargs="+", choices=("mel", "l1", "complex"), default=["mel"])
    p.add_argument("--rvq", action="store_true", help="train through the residual quantizer")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    cfg = FrameNetConfig(magnitude_input=True, max_magnitude=1e3)
    encoder, decoder = FrameEncoder(cfg), FrameDecoder(cfg, SR)
    quantizer = ResidualVectorQuantizer(cfg.dimension, 24, 1024, dead_code_threshold=0.1) if args.rvq else None
    params = list(encoder.parameters()) + list(decoder.parameters())
    optimizer = torch.optim.Adam(params, lr=3e-4, betas=(0.5, 0.9))
    crops = None
    if args.data == "corpus":
        files = read_manifests(MANIFESTS, "train", 0.5)
        crops = CropBatches(files, SR, 1, 1.0, 8, seed=1, gain_db=(-10.0, 6.0), tone_melody_share=0.3)
    start = time.time()
    print(f"probe sines (Hz): {' '.join(f'{f:g}' for f in PROBES)}")
    for step in range(1, args.steps + 1):
        x = crops[step] if crops is not None else random_tones(rng, 8, SR)
        latent = encoder(x)
        commit = 0.0
        if quantizer is not None:
            q = quantizer(latent, int(rng.choice([3, 6, 12, 24])))
            latent, commit = q.quantized, q.commit_loss
        y = decoder(latent)[..., : x.shape[-1]]
        loss = commit + sum(term(name, y, x) for name in args.losses)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        if step % max(1, args.steps // 4) == 0:
            encoder.eval(), decoder.eval()
            figures = probe(encoder, decoder)
            encoder.train(), decoder.train()
            cells = " ".join(f"{b:6.1f}/{lv:5.1f}/{s:6.1f}" for b, lv, s in figures)
            mean_band = np.mean([b for b, _, _ in figures])
            print(
                f"step {step} ({time.time() - start:.0f} s) band/level/SI-SNR dB: {cells} | band mean {mean_band:.1f}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
