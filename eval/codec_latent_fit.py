"""Can the decoder play it at all? Fit a latent so that the decoder plays a steady sine, and compare with what
the codec's own encoder gives it.

    .venv/bin/python eval/codec_latent_fit.py checkpoints/codec --hz 523 1047 1400 2093 --loss convergence
    .venv/bin/python eval/codec_latent_fit.py checkpoints/codec --hz 523 1047 --loss log

For each frequency a 1 s sine at amplitude 0.1 goes through encoder → decoder (no quantizer) and at 6 kbps;
then the latent, started from the encoder's, is fitted by Adam (the decoder frozen) to the sine under one
loss: `convergence` (spectral convergence at 2048 points, linear magnitudes) or `log` (log-magnitude L1 at
2048 points + the multi-scale log-mel the recipes use). Printed: the band level (energy within a semitone of
the sine against the input's, dB) of each output. When a fitted latent plays the sine and the encoder's does
not, the decoder can and the encoder (as trained) never asks it to.
Measured 2026-11-30, shipped codec: 1,047-2,093 Hz, encoder → decoder -73 to -76 dB; fitted with convergence
-7 to -8 dB; fitted with log, -69 to -88 dB, and at 523 Hz log fitting moved from -1.3 dB (the encoder's) to
-41 dB: the log terms' optimum is not the note (losses.SpectralConvergenceLoss). The fitted latent through
the 12 codebooks of 6 kbps: -20 to -27 dB (the codebooks cover it in part). Why the encoder never gets
there: with `--optimizer sgd` (steps in proportion to the gradient) 523 Hz fits at lr 100 and 1,047 Hz does
not move (-73 dB) until lr 1e4 (-1 dB): through exp(log-magnitude) a silent bin passes back ~1e-4 of a live
one's gradient (FrameNetConfig.magnitude_grad_floor).
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from musiclm.codec import Codec
from musiclm.dsp import stft_magnitude
from musiclm.evaluation.tones import band_level_db
from musiclm.training.losses import MultiScaleMelLoss, spectral_convergence


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec")
    p.add_argument("--hz", type=float, nargs="+", default=[523.0, 1047.0, 1400.0, 2093.0])
    p.add_argument("--loss", choices=("convergence", "log"), default="convergence")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="sgd: steps scale with the gradient")
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval().requires_grad_(False)
    sr = codec.sample_rate
    mel = MultiScaleMelLoss(sr, (2048, 1024, 512), 64)

    def loss_fn(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        sy, sx = stft_magnitude(y, 2048, 480), stft_magnitude(x, 2048, 480)
        if args.loss == "convergence":
            return spectral_convergence(sy, sx)
        return (torch.log(sy + 1e-4) - torch.log(sx + 1e-4)).abs().mean() + mel(y, x)

    print("band level, dB: encoder → decoder | at 6 kbps | fitted latent | fitted latent at 6 kbps")
    for f in args.hz:
        x = (0.1 * torch.sin(2 * math.pi * f * torch.arange(sr) / sr))[None, None]
        with torch.no_grad():
            z0 = codec.encoder(x)
            plain = codec.decoder(z0)[..., :sr]
            coded = codec.decode(codec.encode(x, codec.config.n_q_for_bandwidth(6.0)), sr)
        z = z0.clone().requires_grad_(True)
        opt = (torch.optim.Adam if args.optimizer == "adam" else torch.optim.SGD)([z], lr=args.lr)
        for _ in range(args.steps):
            loss = loss_fn(codec.decoder(z)[..., :sr], x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            fitted = codec.decoder(z)[..., :sr]
            fitted_coded = codec.decoder(codec.quantizer(z, codec.config.n_q_for_bandwidth(6.0)).quantized)[..., :sr]
        ref = x[0, 0].numpy()
        row = [band_level_db(y[0, 0].numpy(), ref, f, sr) for y in (plain, coded, fitted, fitted_coded)]
        print(f"{f:7.1f} Hz: " + " | ".join(f"{v:6.1f}" for v in row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
