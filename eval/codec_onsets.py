"""Where does a codec lose its attacks? Onset agreement (`musiclm.evaluation.metrics.onset_agreement`) on
held-out clips at each stage of the codec, and for a latent fitted through the frozen decoder.

    .venv/bin/python eval/codec_onsets.py checkpoints/codec --clips 8
    .venv/bin/python eval/codec_onsets.py checkpoints/codec --clips 3 --seconds 4 --fit 300

Rows per set (real, rendered): "exact magnitudes" (the clip's own STFT magnitudes, exact phase below the
codec's vocoder cutoff and vocoder phase above: the ceiling of the head, no network), "encoder → decoder"
(no quantizer), and the codec at each `--codebooks`. With `--fit N`: the encoder's latent for each clip is
fitted by Adam (N steps, lr 0.01, the decoder frozen) under the multi-scale mel loss + spectral convergence
at 2048 / 512 / 128 points; when the fitted latent keeps attacks the encoder's smears, the decoder can play
them and the encoder does not ask (measured 2026-11-30, shipped codec, rendered clips: 0.02 / 0.62 / 0.69
→ 0.28 / 0.82 / 0.83 in 300 steps).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import Codec
from musiclm.codec.framenet import FrameDecoder, ISTFTHead
from musiclm.dsp import spectral_convergence, stft_magnitude
from musiclm.evaluation.metrics import onset_agreement, si_snr
from musiclm.evaluation.notes import note_f1_from_events, transcribe
from musiclm.training.losses import MultiScaleMelLoss

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}


def ceiling_head(codec: Codec) -> ISTFTHead:
    """The codec's iSTFT head, framing and vocoder cutoff alike, with no magnitude clip: what plays a spectrum
    given from outside the network."""
    head: ISTFTHead = codec.decoder.head
    return ISTFTHead(head.n_fft, head.hop, 1, max_magnitude=1e6, vocoder_from_bin=head.vocoder_from_bin)


def exact_magnitudes(codec: Codec, wav: torch.Tensor) -> torch.Tensor:
    """wav [C, N] through the codec's iSTFT head from its own magnitudes (and phase below the vocoder cutoff)."""
    ceiling = ceiling_head(codec)
    spec = ceiling.analyze(wav[None])
    return ceiling(torch.cat([spec.abs().clamp(min=1e-9).log(), spec.angle()], dim=1))[0, :, : wav.shape[-1]]


def readout_magnitudes(codec: Codec, wav: torch.Tensor, weighted: bool = False) -> torch.Tensor:
    """As `exact_magnitudes`, with each frame's log-magnitudes replaced by their least-squares fit in the
    decoder's readout: its last linear layer maps W features to every bin's log-magnitude, so no decoder,
    however trained, can play a spectrum outside that W-dimensional space (`ConvNeXtStack.proj`).
    `weighted`: each bin weighted by the square root of its magnitude against the frame's loudest, so the
    fit spends itself on the partials rather than on the floor between them."""
    ceiling = ceiling_head(codec)
    spec = ceiling.analyze(wav[None])[0]  # [F, T]
    bins = spec.shape[0]
    proj = codec.decoder.net.proj if codec.decoder.up is None else codec.decoder.net2.proj
    weight, bias = proj.weight[:bins].double(), proj.bias[:bins].double()  # the log-magnitude rows
    mag = spec.abs().double()
    target = mag.clamp(min=1e-6).log() - bias[:, None]  # [F, T]
    if not weighted:
        features = torch.linalg.lstsq(weight, target).solution
    else:
        w = (mag / mag.amax(0, keepdim=True).clamp(min=1e-9)).sqrt() + 1e-3  # [F, T]
        columns = w.T[:, :, None]  # [T, F, 1]
        features = torch.linalg.lstsq(columns * weight[None], columns * target.T[:, :, None]).solution[..., 0].T
    fitted = (weight @ features + bias[:, None]).float()
    return ceiling(torch.cat([fitted, spec.angle()], dim=0)[None])[0, :, : wav.shape[-1]]


def fit_latent(codec: Codec, wav: torch.Tensor, steps: int, sr: int, n_q: int | None = None) -> torch.Tensor:
    """The encoder's latent [1, D, T] fitted to wav through the frozen decoder; with n_q, through the frozen
    quantizer's first n_q codebooks too (straight-through, SoundStream §3.3), so only what codes can say."""
    mel = MultiScaleMelLoss(sr, (2048, 1024, 512, 256, 128, 64), 64)
    x = wav[None]
    with torch.no_grad():
        latent = codec.encoder(x).clone()
    latent.requires_grad_(True)
    opt = torch.optim.Adam([latent], lr=0.01)
    for _ in range(steps):
        y = codec.decoder(codec.quantizer(latent, n_q).quantized if n_q else latent)[..., : x.shape[-1]]
        loss = mel(y, x) + sum(
            spectral_convergence(stft_magnitude(y, n, n // 4), stft_magnitude(x, n, n // 4)) for n in (2048, 512, 128)
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    return latent.detach()


def decode_latent(codec: Codec, latent: torch.Tensor, n: int, n_q: int | None = None) -> torch.Tensor:
    """latent [1, D, T] → audio [C, n], through the first n_q codebooks when given."""
    with torch.no_grad():
        if n_q:
            latent = codec.quantizer.decode(codec.quantizer.encode(latent, n_q))
        return codec.decoder(latent)[0, :, :n]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec")
    p.add_argument("--clips", type=int, default=8, help="clips per set")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--codebooks", type=int, nargs="+", default=[4, 12, 24])
    p.add_argument("--fit", type=int, default=0, help="also fit each clip's latent for this many steps")
    p.add_argument(
        "--fit-codebooks",
        type=int,
        default=0,
        help="with --fit: also fit through the quantizer at this many codebooks, and code the free fit with them",
    )
    p.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    codec = Codec.from_pretrained(args.codec).eval()
    for q in codec.parameters():
        q.requires_grad_(False)
    sr = codec.sample_rate
    if not isinstance(codec.decoder, FrameDecoder):
        sys.exit("codec_onsets.py: needs a frame codec (its iSTFT head)")
    for set_name in args.sets:
        manifest = SETS[set_name]
        clips = pick_clips(manifest, "test", args.clips, args.seconds, sr, 1, seed=0)
        scores: dict[str, list[tuple[float, ...]]] = {}
        for _, wav in clips:
            ref_notes = transcribe(wav, sr)
            with torch.inference_mode():
                outs = {
                    "exact magnitudes": exact_magnitudes(codec, wav),
                    "magnitudes the readout spans": readout_magnitudes(codec, wav),
                    "the same, weighted to partials": readout_magnitudes(codec, wav, weighted=True),
                    "encoder → decoder": codec.decoder(codec.encoder(wav[None]))[0, :, : wav.shape[-1]],
                }
                for n_q in args.codebooks:
                    outs[f"{n_q} codebooks"] = codec.decode(codec.encode(wav[None], n_q=n_q))[0, :, : wav.shape[-1]]
            if args.fit:
                n, k = wav.shape[-1], args.fit_codebooks
                latent = fit_latent(codec, wav, args.fit, sr)
                outs[f"latent fitted, {args.fit} steps"] = decode_latent(codec, latent, n)
                if k:
                    outs[f"that latent, {k} codebooks"] = decode_latent(codec, latent, n, k)
                    coded = fit_latent(codec, wav, args.fit, sr, n_q=k)
                    outs[f"fitted through {k} codebooks"] = decode_latent(codec, coded, n, k)
            for name, out in outs.items():
                f1 = note_f1_from_events(ref_notes, transcribe(out, sr))
                scores.setdefault(name, []).append((float(onset_agreement(wav, out, sr)), float(si_snr(wav, out)), f1))
        for name, rows in scores.items():
            onsets, snr, f1 = np.mean(rows, axis=0)
            print(
                f"{set_name:8s} {name:28s} onset agreement {onsets:.3f}  SI-SNR {snr:6.2f} dB  note F1 {f1:.3f}",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
