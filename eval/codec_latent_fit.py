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

On music (`--renders N`): N held-out renders (data/synth_test, 10 s) at 6 kbps; the latent is fitted to each
(Adam, `--steps`, `--lr`; loss: L1 on the waveform + log-magnitude L1 and spectral convergence at 256-4096
points) either freely from the 6 kbps latent (`--fit free`: what an encoder with unlimited bits could ask of this
decoder) or through the quantizer from the encoder's latent (`--fit codes`, straight-through: codes an
analysis-by-synthesis encoder would send at the same 6 kbps). Printed: note F1, precision and recall
against the reference before and after.

    .venv/bin/python eval/codec_latent_fit.py checkpoints/codec --renders 4 --fit free --steps 60
    .venv/bin/python eval/codec_latent_fit.py checkpoints/codec --renders 4 --fit codes --steps 60

Measured 2026-12-01 (seventeenth session), 4 renders, mean note F1 0.599 at 6 kbps: freely fitted 0.629,
codes fitted through the quantizer 0.615 (the encoder's codes changed in ~80 % of places); per clip from
-0.03 to +0.08. The decoder, not the encoder or the codebooks, bounds note F1 on
renders: no encoder could buy more than ~0.03 from this decoder.
"""

from __future__ import annotations

import argparse
import math
import sys

import torch

from musiclm.codec import Codec
from musiclm.codec.search import reconstruction_error
from musiclm.dsp import spectral_convergence, stft_magnitude
from musiclm.evaluation.tones import band_level_db
from musiclm.training.losses import MultiScaleMelLoss


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec")
    p.add_argument("--hz", type=float, nargs="+", default=[523.0, 1047.0, 1400.0, 2093.0])
    p.add_argument("--loss", choices=("convergence", "log"), default="convergence")
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="sgd: steps scale with the gradient")
    p.add_argument("--renders", type=int, default=0, help="fit music instead: this many held-out renders")
    p.add_argument("--fit", choices=("free", "codes"), default="free", help="with --renders: the latent fitted")
    p.add_argument(
        "--notes",
        type=float,
        default=0.0,
        help="with --renders: add basic-pitch's posteriorgram KL (losses.NotePosteriorLoss) at this weight, "
        "each term relative to its value at the start",
    )
    p.add_argument("--seconds", type=float, default=10.0, help="with --renders: clip length")
    p.add_argument(
        "--manifest",
        default="data/synth_test/manifest.jsonl",
        help="with --renders: the clips' test split (default: the held-out renders; data/recorded/manifest.jsonl "
        "for real music)",
    )
    p.add_argument("--save", help="with --renders: write reference, 6 kbps and fitted WAVs to this folder")
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).float().eval().requires_grad_(False)
    if args.renders:
        return fit_renders(codec, args)
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


def fit_renders(codec: Codec, args) -> int:
    from pathlib import Path

    from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

    from musiclm.evaluation.metrics import chroma_agreement, onset_agreement, si_snr
    from musiclm.evaluation.notes import note_scores_from_events, transcribe

    n_q = codec.config.n_q_for_bandwidth(6.0)
    manifest = Path(__file__).resolve().parent.parent / args.manifest
    clips = [
        w.float() for _, w in pick_clips(manifest, "test", args.renders, args.seconds, codec.sample_rate, 1, seed=0)
    ]

    def quantized(z: torch.Tensor) -> torch.Tensor:
        return codec.quantizer.decode(codec.quantizer.encode(z, n_q))

    loss_fn = reconstruction_error  # the objective musiclm.codec.search encodes with

    note_loss = None
    if args.notes > 0:
        from musiclm.training.losses import NotePosteriorLoss

        note_loss = NotePosteriorLoss(codec.sample_rate)

    before, after = [], []
    for x in clips:  # [1, N]
        n = x.shape[-1]
        with torch.no_grad():
            z0 = codec._encode_latent(x[None], 0)
            coded = codec._decode_latent(quantized(z0), 0)[0, :, :n]
            scale = float(loss_fn(coded[None], x[None]))
            note_scale = float(note_loss(coded[None], x[None])) if note_loss is not None else 1.0

        z = (quantized(z0) if args.fit == "free" else z0).clone().requires_grad_(True)
        opt = torch.optim.Adam([z], lr=args.lr)
        for _ in range(args.steps):
            latent = z if args.fit == "free" else z + (quantized(z.detach()) - z).detach()  # straight-through
            y = codec._decode_latent(latent, 0)[..., :n]
            loss = loss_fn(y, x[None]) / scale  # each term relative to where it starts
            if note_loss is not None:
                loss = loss + args.notes * note_loss(y, x[None]) / note_scale
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            fitted = codec._decode_latent(z if args.fit == "free" else quantized(z), 0)[0, :, :n]
        ref = transcribe(x, codec.sample_rate)
        before.append(note_scores_from_events(ref, transcribe(coded, codec.sample_rate)))
        after.append(note_scores_from_events(ref, transcribe(fitted, codec.sample_rate)))
        others = [
            (
                float(si_snr(x, y)),
                float(chroma_agreement(x, y, codec.sample_rate)),
                float(onset_agreement(x, y, codec.sample_rate)),
            )
            for y in (coded, fitted)
        ]
        print(
            "F1 / precision / recall: 6 kbps {:.3f} / {:.3f} / {:.3f}, fitted {:.3f} / {:.3f} / {:.3f}".format(
                before[-1][2], *before[-1][:2], after[-1][2], *after[-1][:2]
            )
            + "; SI-SNR / chroma / onsets: 6 kbps {:.2f} / {:.3f} / {:.3f}, fitted {:.2f} / {:.3f} / {:.3f}".format(
                *others[0], *others[1]
            ),
            flush=True,
        )
        if args.save:
            import soundfile

            stem = Path(args.save) / f"render{len(before) - 1}"
            stem.parent.mkdir(parents=True, exist_ok=True)
            for tag, y in (("reference", x), ("6kbps", coded), (f"fitted_{args.fit}_notes{args.notes:g}", fitted)):
                soundfile.write(f"{stem}_{tag}.wav", y.T.numpy(), codec.sample_rate)
    f1_before, f1_after = (sum(r[2] for r in rows) / len(rows) for rows in (before, after))
    print(f"mean note F1: 6 kbps {f1_before:.3f}, fitted ({args.fit}) {f1_after:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
