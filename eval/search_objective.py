"""Which objective should analysis-by-synthesis encoding search down? Note F1 after the search, per objective.

`musiclm.codec.search` searches the latent towards the input by waveform L1 plus log-magnitude and spectral
convergence at 256-4096 points. Those terms weigh every linear-frequency bin alike, so most of their weight
sits above 2.5 kHz, where the notes' fundamentals are not, and a 4096-point window (5.9 Hz bins) cannot part
neighbouring low notes. A log constant-Q term (`musiclm.dsp.cqt_magnitude`, 36 bands an octave as basic-pitch
sees them, 8192- and 4096-point windows) weighs each semitone alike; FlowDec (ICLR 2025) adds such a term to
discriminator-free training for the same low-frequency failures.

    .venv/bin/python eval/search_objective.py checkpoints/codec base cqt:4 --clips 6 --seconds 8

Objectives: `encoder` (no search), `base` (the compressor's), `cqt:W` (base + W × the log-CQT L1 at each
window). Each searches the same training clips (real and rendered: an objective is chosen here, so not on the
held-out clips that score the compressor) at `--kbps`, `--steps` at `--lr`, and the codes are decoded straight
through the model. Printed per objective: note F1, precision, recall, SI-SNR, chroma and onset agreement
(means), and note F1 paired against the first objective with its 95 % bootstrap interval.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from pathlib import Path

import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs
from tqdm import tqdm

from musiclm.codec import Codec
from musiclm.codec.search import SEARCH_LR, reconstruction_error, search_codes, search_latent
from musiclm.dsp import cqt_magnitude
from musiclm.evaluation.metrics import chroma_agreement, onset_agreement, si_snr
from musiclm.evaluation.notes import note_scores_from_events, transcribe
from musiclm.evaluation.stats import paired_difference

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth/manifest.jsonl"}
CQT_N_FFTS = (8192, 4096)
CQT_BINS_PER_OCTAVE = 36  # basic-pitch's CQT: 3 bins a semitone


def log_cqt_error(output: torch.Tensor, target: torch.Tensor, sample_rate: int) -> torch.Tensor:
    """Σ over CQT_N_FFTS of the L1 between log pseudo-CQT magnitudes (hop n_fft / 16)."""
    error = output.new_zeros(())
    for n_fft in CQT_N_FFTS:
        co, ct = (
            cqt_magnitude(w, sample_rate, n_fft, n_fft // 16, bins_per_octave=CQT_BINS_PER_OCTAVE)
            for w in (output, target)
        )
        error = error + (torch.log(co.clamp(min=1e-5)) - torch.log(ct.clamp(min=1e-5))).abs().mean()
    return error


def with_cqt(output: torch.Tensor, target: torch.Tensor, weight: float, sample_rate: int) -> torch.Tensor:
    return reconstruction_error(output, target) + weight * log_cqt_error(output, target, sample_rate)


def objective(text: str, sample_rate: int):
    if text in ("encoder", "base"):  # the encoder's codes are scored without a search
        return reconstruction_error
    kind, _, weight = text.partition(":")
    if kind == "cqt" and weight:
        try:
            return functools.partial(with_cqt, weight=float(weight), sample_rate=sample_rate)
        except ValueError:
            pass
    raise SystemExit(f"objective {text!r}: 'encoder', 'base' or 'cqt:W' (e.g. cqt:4)")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path)
    p.add_argument("objectives", nargs="+", help="encoder | base | cqt:W; the first is the one the others pair against")
    p.add_argument("--clips", type=int, default=6, help="clips per set (real, rendered), from the train split")
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--kbps", type=float, default=6.0)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--lr", type=float, default=SEARCH_LR)
    p.add_argument("--seed", type=int, default=7)
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval()
    sr, n_q = codec.sample_rate, codec.config.n_q_for_bandwidth(args.kbps)
    objectives = {text: objective(text, sr) for text in args.objectives}
    clips = [
        (set_name, w[None])
        for set_name, manifest in SETS.items()
        for _, w in pick_clips(manifest, "train", args.clips, args.seconds, sr, 1, args.seed)
    ]
    references = [transcribe(w[0], sr) for _, w in clips]
    scores: dict[str, list[dict[str, float]]] = {text: [] for text in objectives}
    seconds: dict[str, float] = dict.fromkeys(objectives, 0.0)
    with tqdm(total=len(clips) * len(objectives), desc="search", unit="clip") as bar:
        for (set_name, wav), reference in zip(clips, references, strict=True):
            for text, error in objectives.items():
                start = time.perf_counter()
                if text == "encoder":
                    codes = search_codes(codec, wav, n_q, 0)
                else:
                    codes = search_latent(codec, wav, n_q, args.steps, lr=args.lr, objective=error).codes
                seconds[text] += time.perf_counter() - start
                with torch.no_grad():
                    out = codec._decode_latent(codec.quantizer.decode(codes), 0)[..., : wav.shape[-1]]
                precision, recall, f1 = note_scores_from_events(reference, transcribe(out[0], sr))
                scores[text].append(
                    {
                        "set": set_name,
                        "note_f1": f1,
                        "precision": precision,
                        "recall": recall,
                        "si_snr": float(si_snr(wav, out)),
                        "chroma": float(chroma_agreement(wav, out, sr)),
                        "onsets": float(onset_agreement(wav, out, sr)),
                    }
                )
                bar.update()
    first = args.objectives[0]
    setting = f"{args.kbps:g} kbps, {args.steps} steps at lr {args.lr:g}"
    print(f"\n{len(clips)} training clips of {args.seconds:g} s, {setting}")
    columns = "objective | set | note F1 | precision | recall | SI-SNR dB | chroma | onsets | note F1 − first [95 %]"
    print(f"| {columns} | s/clip |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for text, rows in scores.items():
        for set_name in (*SETS, "all"):
            part = [r for r in rows if set_name in ("all", r["set"])]
            base = [r for r in scores[first] if set_name in ("all", r["set"])]
            mean = {k: sum(r[k] for r in part) / len(part) for k in part[0] if k != "set"}
            paired = "–"
            if text != first:
                d = paired_difference([r["note_f1"] for r in part], [r["note_f1"] for r in base])
                paired = f"{d.mean:+.3f} [{d.low:+.3f}, {d.high:+.3f}]"
            print(
                f"| {text} | {set_name} | {mean['note_f1']:.3f} | {mean['precision']:.3f} | {mean['recall']:.3f} "
                f"| {mean['si_snr']:.2f} | {mean['chroma']:.3f} | {mean['onsets']:.3f} | {paired} "
                f"| {seconds[text] / len(clips):.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
