"""Where a codec loses notes: the autoencoder without quantization, precision against recall, onset timing,
and pitch range, beside Opus on the same clips.

    .venv/bin/python eval/codec_diagnose.py checkpoints/codec --clips 8 --kbps 6 --opus 12

For `--clips` held-out clips of each set (real: test tracks of data/recorded; rendered: data/synth_test, as
`eval/codec_curve.py` picks them), basic-pitch transcribes the reference and each system's output:
- `unquantized`: codec.decoder(codec.encoder(x)), the autoencoder's own ceiling (no codebooks at all);
- `codec K kbps`: codec.decode(codec.encode(x)) at each `--kbps`;
- `opus K kbps`: Opus CBR at each `--opus`.
Printed per system: note F1 / SI-SNR / chroma (`quality`), note precision and recall with the onset
tolerance at 50 / 100 / 200 ms (pitch within 50 cents, offsets ignored: mir_eval), and recall and precision
by pitch band (reference notes found, output notes that match) — a codec that smears attacks gains most
from the looser tolerance; one that loses upper harmonics loses its high notes first. And what the output's
extra notes are (`extra_*`, shares of all output notes, at 50 ms): a reference note struck again (same pitch
sounding), a partial of a sounding note heard as a note (an octave, twelfth, two octaves, ... above it),
a note below a sounding one (an octave, twelfth, ... below), or anything else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs
from compare_draws import write_report

from musiclm.codec import Codec
from musiclm.evaluation.codec_eval import quality
from musiclm.evaluation.notes import note_f1_from_events, transcribe
from musiclm.evaluation.opus import opus_roundtrip

ROOT = Path(__file__).resolve().parent.parent
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}
TOLERANCES_S = (0.05, 0.1, 0.2)
BANDS = ((0, 48), (48, 60), (60, 72), (72, 128))  # MIDI pitch: below C3, C3-B3, C4-B4, C5 and up
# partials 2-8 of a harmonic tone, in semitones above its fundamental (rounded): 12, 19, 24, 28, 31, 34, 36
PARTIALS = (12, 19, 24, 28, 31, 34, 36)
EXTRA_KINDS = ("struck_again", "partial_above", "below", "other")


def extra_kind(pitch: int, onset: float, ref_notes, margin: float = 0.05) -> str:
    """What an unmatched output note is, from the reference notes sounding at its onset (± margin)."""
    sounding = (ref_notes.onsets - margin <= onset) & (onset <= ref_notes.offsets + margin)
    steps = pitch - ref_notes.pitches[sounding].astype(int)
    if (steps == 0).any():
        return "struck_again"
    if np.isin(steps, PARTIALS).any():
        return "partial_above"
    if np.isin(-steps, PARTIALS).any():
        return "below"
    return "other"


def band_of(pitch: int) -> int:
    return next(i for i, (lo, hi) in enumerate(BANDS) if lo <= pitch < hi)


def diagnose(ref_notes, est_notes) -> dict:
    """Precision / recall at each onset tolerance and per pitch band (at 50 ms) of est against ref."""
    from mir_eval.transcription import match_notes

    out: dict = {}
    if len(ref_notes) == 0 or len(est_notes) == 0:
        matches_at = {tol: [] for tol in TOLERANCES_S}
    else:
        matches_at = {
            tol: match_notes(
                ref_notes.intervals,
                ref_notes.pitches_hz,
                est_notes.intervals,
                est_notes.pitches_hz,
                onset_tolerance=tol,
                pitch_tolerance=50.0,
                offset_ratio=None,
            )
            for tol in TOLERANCES_S
        }
    for tol, matches in matches_at.items():
        out[f"precision@{tol:g}"] = (len(matches), len(est_notes))
        out[f"recall@{tol:g}"] = (len(matches), len(ref_notes))
    found = {i for i, _ in matches_at[TOLERANCES_S[0]]}
    right = {j for _, j in matches_at[TOLERANCES_S[0]]}
    kinds = [
        extra_kind(int(est_notes.pitches[j]), float(est_notes.onsets[j]), ref_notes)
        for j in range(len(est_notes))
        if j not in right
    ]
    for kind in EXTRA_KINDS:
        out[f"extra_{kind}"] = (kinds.count(kind), len(est_notes))
    for b in range(len(BANDS)):
        ref_in = [i for i, p in enumerate(ref_notes.pitches) if band_of(int(p)) == b]
        est_in = [j for j, p in enumerate(est_notes.pitches) if band_of(int(p)) == b]
        out[f"band{b}_recall"] = (sum(i in found for i in ref_in), len(ref_in))
        out[f"band{b}_precision"] = (sum(j in right for j in est_in), len(est_in))
    return out


def summarise(rows: list[dict]) -> dict:
    """Means of the per-clip quality figures; counts pooled over clips for the precision/recall entries."""
    out = {}
    for key in rows[0]:
        if isinstance(rows[0][key], tuple):
            hits, total = (sum(r[key][i] for r in rows) for i in (0, 1))
            out[key] = round(hits / total, 3) if total else None
            if key.startswith("band") and key.endswith("recall"):
                out[key.replace("recall", "notes")] = total
        else:
            out[key] = round(float(np.mean([r[key] for r in rows])), 3)
    return out


@torch.no_grad()
def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("codec", type=Path, help="codec directory")
    p.add_argument("--clips", type=int, default=8, help="clips per set (real, rendered)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--kbps", type=float, nargs="+", default=[6.0])
    p.add_argument("--opus", type=float, nargs="*", default=[12.0])
    p.add_argument("--out", type=Path, default=ROOT / "outputs/codec_diagnose.json")
    args = p.parse_args()
    torch.set_num_threads(1)
    codec = Codec.from_pretrained(args.codec).eval()
    assert codec.sample_rate == 24000 and codec.channels == 1, "clips are cut at 24 kHz mono"

    systems = {"unquantized": lambda w: codec.decoder(codec.encoder(w[None]))[0, :, : w.shape[-1]]}
    for kbps in args.kbps:
        n_q = codec.config.n_q_for_bandwidth(kbps)
        systems[f"codec {kbps:g} kbps"] = lambda w, n_q=n_q: codec.decode(codec.encode(w[None], n_q), w.shape[-1])[0]
    for kbps in args.opus:
        systems[f"opus {kbps:g} kbps"] = lambda w, kbps=kbps: opus_roundtrip(w, 24000, kbps)[0]

    report = {"codec": str(args.codec), "clips": args.clips, "bands": BANDS, "sets": {}}
    for name, manifest in SETS.items():
        clips = [w for _, w in pick_clips(manifest, "test", args.clips, args.seconds, 24000, 1, seed=0)]
        refs = [transcribe(w, 24000) for w in clips]
        report["sets"][name] = {}
        for label, roundtrip in systems.items():
            rows = []
            for wav, ref_notes in zip(clips, refs, strict=True):
                est = roundtrip(wav)
                est_notes = transcribe(est, 24000)  # once: note F1 and the diagnosis share it
                figures = quality(wav, est, 24000)  # without ref_notes it does not transcribe est again
                row = {"note_f1": note_f1_from_events(ref_notes, est_notes)}
                row |= {k: figures[k] for k in ("si_snr", "chroma")}
                rows.append(row | diagnose(ref_notes, est_notes))
            summary = summarise(rows)
            report["sets"][name][label] = summary
            print(f"{name:8s} {label:16s} " + " ".join(f"{k} {v}" for k, v in summary.items()), flush=True)
    write_report(args.out, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
