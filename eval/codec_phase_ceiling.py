"""How many notes survive a frame codec's iSTFT head if its magnitudes were perfect: the ceiling of each phase
scheme, before any training.

    .venv/bin/python eval/codec_phase_ceiling.py --clips 6 --cutoffs 0 500 1000

Held-out clips (real recordings split by track, and rendered MIDI never trained on; `bench_codec.pick_clips`)
are analysed at the frame codec's framing (n_fft 1920, hop 480 at 24 kHz) and resynthesised by
`musiclm.codec.framenet.ISTFTHead` with their exact magnitudes and
- "learned": their exact phase everywhere (the head inverts exactly: the ceiling of a learned phase);
- "vocoder from X Hz": the exact phase below X and `vocoder_phase` (phase propagated from the magnitudes
  alone, `frame.vocoder_phase_hz`) from X up.
Note F1 and SI-SNR against the clip are printed per clip and as means; a codec with that phase scheme can at
best reach them. Results also go to outputs/codec_phase_ceiling.json.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec.framenet import ISTFTHead
from musiclm.evaluation.metrics import si_snr
from musiclm.evaluation.notes import note_f1

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}
SR, N_FFT, HOP = 24000, 1920, 480


def resynthesise(wav: torch.Tensor, cutoff_hz: float | None) -> torch.Tensor:
    """wav [C, N] → the head's output from wav's exact magnitudes (and phase below cutoff_hz; None: all)."""
    from_bin = None if cutoff_hz is None else math.ceil(cutoff_hz * N_FFT / SR)
    head = ISTFTHead(N_FFT, HOP, channels=1, max_magnitude=1e6, vocoder_from_bin=from_bin)
    spec = head.analyze(wav[None])
    return head(torch.cat([spec.abs().clamp(min=1e-9).log(), spec.angle()], dim=1))[0, :, : wav.shape[-1]]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=6, help="clips per set (real, rendered)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--cutoffs", type=float, nargs="+", default=[0.0, 500.0, 1000.0], help="vocoder from (Hz)")
    p.add_argument("--out", type=Path, default=ROOT / "outputs/codec_phase_ceiling.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    schemes: dict[str, float | None] = {"learned": None}
    schemes.update({f"vocoder from {c:g} Hz": c for c in args.cutoffs})
    report: dict[str, dict[str, dict[str, float]]] = {}
    for set_name, manifest in SETS.items():
        clips = pick_clips(manifest, "test", args.clips, args.seconds, SR, 1, seed=0)
        scores: dict[str, list[tuple[float, float]]] = {name: [] for name in schemes}
        for clip_name, wav in clips:
            line = []
            for name, cutoff in schemes.items():
                out = resynthesise(wav, cutoff)
                f1, snr = note_f1(wav, out, SR), float(si_snr(wav, out))
                scores[name].append((f1, snr))
                line.append(f"{name}: {f1:.3f} / {snr:5.1f} dB")
            print(f"{set_name} {clip_name}: " + " | ".join(line), flush=True)
        report[set_name] = {
            name: {
                "note_f1": sum(f for f, _ in vals) / len(vals),
                "si_snr": sum(s for _, s in vals) / len(vals),
            }
            for name, vals in scores.items()
        }
    print("\nmeans (note F1 / SI-SNR dB):")
    for set_name, by_scheme in report.items():
        cells = " | ".join(f"{n}: {v['note_f1']:.3f} / {v['si_snr']:.1f}" for n, v in by_scheme.items())
        print(f"  {set_name} ({args.clips} clips): {cells}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
