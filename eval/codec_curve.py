"""Codec quality against training steps: score every snapshot of one or more runs on fixed held-out clips.

    .venv/bin/python eval/codec_curve.py runs/cmp-frame runs/cmp-baseline --clips 6
    .venv/bin/python eval/codec_curve.py runs/long-frame --table          # print the table of what is scored
    .venv/bin/python eval/codec_curve.py checkpoints/codec --bandwidths 6 --paths raw mlc --clips 8

A run folder's snapshots are `RUN/snap/step_N/` (codec directories copied from `RUN/export/` while it
trains; `RUN/snap/times.txt` holds "HH:MM:SS step" lines) plus `RUN/export/` itself; a codec directory
(config.json + model.safetensors) is one snapshot, step 0. Each snapshot is scored as the compressor users
get (`--paths mlc`, the default: compress_bytes → decompress_bytes, so the .mlc level corrections are in the
loudness figure) and/or straight through the model (`raw`: codec.decode(codec.encode(x)), what the LM's
tokens sound like) at every bandwidth on the same clips: `--clips` from the test split of the recorded set (real music,
split by track) and as many rendered-MIDI clips from pieces never trained on (data/synth_test). Metrics lead
with what hears notes: note F1, SI-SNR, chroma agreement; log-mel beside them. References are transcribed
once per process. Each row also carries `sines_lost`: the share of 20 steady sines a quarter-tone off the grid,
C2-A6, that come back more than 6 dB down in their band (`musiclm.evaluation.tones.sine_band_lost_share`;
the raw model at that bandwidth, or Opus). Results append to outputs/codec_curve.jsonl (one row per run,
step, set, bandwidth, path); rows already there are not recomputed, so the script can be re-run as snapshots
arrive. Each clip's scores are also kept as they come, in OUT's `.clips.jsonl` sibling, so a long run (a searched
encoding takes ~80 s a clip) that is stopped picks up at the clip it was on when started again.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path

import torch
from bench_codec import pick_clips  # eval/ is on sys.path when this script runs

from musiclm.codec import Codec
from musiclm.codec.search import SEARCH_CQT_WEIGHT, SEARCH_LR, SearchSettings
from musiclm.compress import compress_bytes, decompress_bytes
from musiclm.compress.encode import band_gains_default
from musiclm.evaluation import metrics
from musiclm.evaluation.codec_eval import quality
from musiclm.evaluation.notes import transcribe
from musiclm.evaluation.opus import opus_roundtrip
from musiclm.evaluation.tones import codec_roundtrip, sine_band_lost_share

ROOT = Path(__file__).resolve().parent.parent
# rows are reused by run name: the Opus rows before 2026-12-01 ("opus") were VBR, so CBR ones get a name of their own
OPUS_RUN = "opus-cbr"
SETS = {"real": ROOT / "data/recorded/manifest.jsonl", "rendered": ROOT / "data/synth_test/manifest.jsonl"}


def snapshots(run: Path) -> list[tuple[int, Path]]:
    if (run / "config.json").is_file():  # a codec directory
        return [(0, run)]
    found = {}
    for d in sorted((run / "snap").glob("step_*")):
        found[int(d.name.split("_")[1])] = d
    step_file = run / "export" / "step.txt"
    if step_file.is_file():
        found.setdefault(int(step_file.read_text().strip()), run / "export")
    return sorted(found.items())


def minutes_at(run: Path) -> dict[int, float]:
    """step → minutes since the run's first CSV row (wall clock; from snap/times.txt)."""
    times = run / "snap" / "times.txt"
    if not times.is_file():
        return {}
    out, start = {}, None
    for line in times.read_text().splitlines():
        clock, step = line.split()
        h, m, s = (int(x) for x in clock.split(":"))
        t = h * 60 + m + s / 60
        start = start if start is not None else t - 4.0  # the first snapshot is taken 4 minutes in
        out[int(step)] = round(t - start, 1)
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path)
    p.add_argument("--clips", type=int, default=6, help="clips per set (real, rendered)")
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--bandwidths", type=float, nargs="+", default=None, help="default: all of the codec's")
    p.add_argument(
        "--paths",
        nargs="+",
        choices=("mlc", "raw"),
        default=["mlc"],
        help="mlc: through the compressor (.mlc bytes, level corrections included); raw: codec.decode(codec.encode)",
    )
    p.add_argument("--only-last", action="store_true", help="score only each run's newest snapshot")
    p.add_argument("--out", type=Path, default=ROOT / "outputs/codec_curve.jsonl")
    p.add_argument("--table", action="store_true", help="print the scored rows as a markdown table and exit")
    p.add_argument(
        "--paired",
        action="store_true",
        help="print each scored row of the runs against each Opus row of its set (and a searched row against the "
        "unsearched 'mlc' one), paired over the clips both scored (OUT.clips.jsonl: mean difference and 95 %% "
        "bootstrap interval), and exit",
    )
    p.add_argument(
        "--opus", type=float, nargs="*", default=[], help="also score Opus CBR at these kbps (run 'opus-cbr')"
    )
    p.add_argument("--visqol", action="store_true", help="add ViSQOL (~1.5 s per clip and bandwidth)")
    p.add_argument("--sets", nargs="+", choices=sorted(SETS), default=sorted(SETS), help="default: both")
    p.add_argument(
        "--search",
        type=int,
        default=0,
        help="--paths mlc encodes with this many analysis-by-synthesis steps (musiclm.codec.search); "
        "rows get path 'mlc+searchNlrLR' (LR: --search-lr)",
    )
    p.add_argument("--search-lr", type=float, default=SEARCH_LR, help="the search's learning rate")
    p.add_argument(
        "--search-cqt",
        type=float,
        default=SEARCH_CQT_WEIGHT,
        help="the search objective's constant-Q weight (rows get 'cqtW')",
    )
    p.add_argument(
        "--band-gains",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="--paths mlc: the compressor's default, band gains at 6 kbps and up (rows 'mlc+gains'); "
        "--no-band-gains: codes and level corrections only (rows 'mlc', as before band gains existed)",
    )
    args = p.parse_args()
    search_settings = SearchSettings(args.search, args.search_lr, args.search_cqt)
    torch.set_num_threads(1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in args.out.read_text().splitlines()] if args.out.is_file() else []
    if args.table:
        print(table([r for r in done if any(r["run"] == str(run) for run in args.runs)]))
        return 0
    if args.paired:
        print(paired_table(args.out.with_suffix(".clips.jsonl"), [str(run) for run in args.runs], args.seconds))
        return 0
    # rows from before --paths were scored raw
    seen = {(r["run"], r["step"], r["set"], r["kbps"], r.get("path", "raw")) for r in done}
    clip_cache = ClipCache(args.out.with_suffix(".clips.jsonl"), args.seconds, args.visqol)
    refs = {}
    for name, manifest in ((name, SETS[name]) for name in args.sets):
        clips = [w for _, w in pick_clips(manifest, "test", args.clips, args.seconds, 24000, 1, seed=0)]
        refs[name] = (clips, [transcribe(w, 24000) for w in clips])
    with args.out.open("a") as out:
        for kbps in args.opus:
            for name, (clips, notes) in refs.items():
                if (OPUS_RUN, 0, name, kbps, "raw") in seen:
                    continue
                scores = [
                    clip_cache.score((OPUS_RUN, 0, name, kbps, "raw", i), wav, ref, partial(opus_decoded, kbps=kbps))
                    for i, (wav, ref) in enumerate(zip(clips, notes, strict=True))
                ]
                lost = sine_band_lost_share(
                    lambda x, k=kbps: opus_roundtrip(torch.from_numpy(x)[None], 24000, k)[0][0].numpy(), 24000
                )
                key = {"run": OPUS_RUN, "step": 0, "minutes": None, "set": name, "kbps": kbps, "sines_lost": lost}
                write(out, key, scores)
        for run in args.runs:
            minutes = minutes_at(run)
            snaps = snapshots(run)[-1:] if args.only_last else snapshots(run)
            for step, directory in snaps:
                codec = Codec.from_pretrained(directory)
                assert codec.sample_rate == 24000 and codec.channels == 1, "clips are cut at 24 kHz mono"
                for kbps in args.bandwidths or codec.bandwidths:
                    lost = None  # off-grid steady sines lost in their band (musiclm.evaluation.tones), once per kbps
                    for name, (clips, notes) in refs.items():
                        for path in args.paths:
                            search = search_settings if path == "mlc" else SearchSettings()
                            gains = path == "mlc" and args.band_gains and band_gains_default(codec, kbps, True)
                            # rows before SEARCH_LR was raised to 0.15 are "mlc+searchN" (lr 0.01, no CQT term)
                            label = "+".join(
                                [path, *(["gains"] if gains else []), *([search.label] if search.steps else [])]
                            )
                            if (str(run), step, name, kbps, label) in seen:
                                continue
                            scores = [
                                clip_cache.score(
                                    (str(run), step, name, kbps, label, i),
                                    wav,
                                    ref,
                                    partial(roundtrip, codec, kbps=kbps, path=path, search=search, band_gains=gains),
                                )
                                for i, (wav, ref) in enumerate(zip(clips, notes, strict=True))
                            ]
                            if lost is None:
                                lost = sine_band_lost_share(
                                    codec_roundtrip(codec, codec.config.n_q_for_bandwidth(kbps)), 24000
                                )
                            key = {"run": str(run), "step": step, "minutes": minutes.get(step), "set": name}
                            write(out, {**key, "kbps": kbps, "path": label, "sines_lost": lost}, scores)
    return 0


@torch.no_grad()
def roundtrip(
    codec, wav: torch.Tensor, kbps: float, path: str, search: SearchSettings | None = None, band_gains: bool = False
) -> torch.Tensor:
    """wav [1, N] at 24 kHz → decoded [1, N]: through the .mlc compressor (encoding with `search`, with or
    without `band_gains`), or straight through the model."""
    if path.startswith("mlc"):
        mlc = compress_bytes(wav, codec, sample_rate=24000, bandwidth=kbps, search=search, band_gains=band_gains)
        return decompress_bytes(mlc, codec)[0]
    return codec.decode(codec.encode(wav[None], codec.config.n_q_for_bandwidth(kbps)), wav.shape[-1])[0]


class ClipCache:
    """One clip's scores per line (run, step, set, kbps, path, clip index, seconds), appended as each is scored:
    a stopped run resumes at its clip. Scores without ViSQOL are recomputed when ViSQOL is asked for."""

    def __init__(self, path: Path, seconds: float, with_visqol: bool):
        self.path, self.seconds, self.with_visqol = path, seconds, with_visqol
        self.rows = {}
        if path.is_file():
            for line in path.read_text().splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut short when a run was killed mid-write
                    continue
                self.rows[tuple(row["key"])] = row["scores"]

    def score(self, key: tuple, ref: torch.Tensor, ref_notes, decode: Callable[[torch.Tensor], torch.Tensor]) -> dict:
        """The clip's scores under `key`, from the file or by `decode(ref)` → scored against `ref`."""
        key = (*key, self.seconds)
        cached = self.rows.get(key)
        if cached is not None and ("visqol" in cached or not self.with_visqol):
            return cached
        scores = score(ref, decode(ref), ref_notes, self.with_visqol)
        self.rows[key] = scores
        with self.path.open("a") as f:
            f.write(json.dumps({"key": list(key), "scores": scores}) + "\n")
        return scores


def opus_decoded(wav: torch.Tensor, kbps: float) -> torch.Tensor:
    return opus_roundtrip(wav, 24000, kbps)[0]


def score(ref, est, ref_notes, with_visqol: bool) -> dict:
    out = quality(ref, est, 24000, ref_notes)
    if with_visqol:
        out["visqol"] = metrics.visqol(ref, est, 24000)
    return out


def write(out, key: dict, scores: list[dict]) -> None:
    row = {**key, "clips": len(scores), **{k: sum(s[k] for s in scores) / len(scores) for k in scores[0]}}
    out.write(json.dumps(row) + "\n")
    out.flush()
    print(
        f"{Path(row['run']).name} step {row['step']} {row['set']} {row['kbps']:g} kbps {row.get('path', 'raw')}: "
        f"note F1 {row['note_f1']:.3f} "
        + (
            f"(P {row['note_precision']:.3f} R {row['note_recall']:.3f}) "
            if row.get("note_precision") is not None
            else ""
        )
        + f"SI-SNR {row['si_snr']:.2f} chroma {row['chroma']:.3f} "
        + (f"onsets {row['onsets']:.3f} " if row.get("onsets") is not None else "")
        + f"loudness Δ {row['loudness']:.2f} LU"
        + (f" ViSQOL {row['visqol']:.2f}" if "visqol" in row else "")
        + (f" sines lost {row['sines_lost']:.0%}" if row.get("sines_lost") is not None else ""),
        file=sys.stderr,
    )


def paired_table(clips_file: Path, runs: list[str], seconds: float, metrics=("note_f1", "si_snr")) -> str:
    """Each (run, step, kbps, path) of `runs` minus each Opus row of the same set, and a searched row minus the
    same codec's unsearched one ("mlc"), over the clip indices both have in `clips_file`: mean difference and
    its percentile bootstrap interval (musiclm.evaluation.stats), after each side's own mean of the first metric
    over those clips (a run stopped part-way is compared on the clips it scored)."""
    from musiclm.evaluation.stats import paired_difference

    scores: dict[tuple, dict[int, dict]] = {}
    for (run, step, name, kbps, path, clip, clip_seconds), values in ClipCache(clips_file, seconds, False).rows.items():
        if clip_seconds == seconds:
            scores.setdefault((run, step, name, kbps, path), {})[clip] = values

    def label(key: tuple) -> str:
        return f"Opus {key[3]:g} kbps" if key[0] == OPUS_RUN else f"{Path(key[0]).name} {key[3]:g} kbps {key[4]}"

    cells = [f"{metrics[0]} of each", *(f"{m} difference [95 % interval]" for m in metrics)]
    header = "| set | difference | clips | " + " | ".join(cells) + " |"
    lines = [header, "|" + "---|" * (4 + len(metrics))]
    for key, ours in sorted(scores.items(), key=lambda kv: tuple(map(str, kv[0]))):
        if key[0] not in runs:
            continue
        bases = [k for k in scores if k[0] == OPUS_RUN and k[2] == key[2]]
        if key[4].startswith("mlc+"):  # against the plain compressor, and a search against searches listed before it
            searched = key[4].startswith("mlc+search")
            bases += [
                k
                for k in scores
                if k[:4] == key[:4] and (k[4] == "mlc" or (searched and "mlc+search" <= k[4] < key[4]))
            ]
        for base in sorted(bases, key=lambda k: (k[0], k[3])):
            theirs = scores[base]
            clips = sorted(set(ours) & set(theirs))
            if not clips:
                continue
            means = [sum(side[c][metrics[0]] for c in clips) / len(clips) for side in (ours, theirs)]
            cells = [f"{means[0]:.3f} / {means[1]:.3f}"] + [
                str(paired_difference([ours[c][m] for c in clips], [theirs[c][m] for c in clips])) for m in metrics
            ]
            lines.append(f"| {key[2]} | {label(key)} − {label(base)} | {len(clips)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table(rows: list[dict]) -> str:
    header = (
        "| run | step | min | set | kbps | path | note F1 ↑ | SI-SNR dB ↑ | chroma ↑ | onsets ↑ | ViSQOL ↑ | log-mel ↓ "
        "| loud. Δ LU ↓ | sines lost ↓ |"
    )
    lines = [header, "|" + "---|" * 14]
    for r in sorted(rows, key=lambda r: (r["run"], r["step"], r["set"], r["kbps"], r.get("path", "raw"))):
        cells = [
            Path(r["run"]).name,
            str(r["step"]),
            "" if r["minutes"] is None else f"{r['minutes']:g}",
            r["set"],
            f"{r['kbps']:g}",
            r.get("path", "raw"),
            f"{r['note_f1']:.3f}",
            f"{r['si_snr']:.2f}",
            f"{r['chroma']:.3f}",
            f"{r['onsets']:.3f}" if r.get("onsets") is not None else "",
            f"{r['visqol']:.2f}" if "visqol" in r else "",
            f"{r['log_mel']:.3f}",
            f"{r['loudness']:.2f}",
            f"{r['sines_lost']:.0%}" if r.get("sines_lost") is not None else "",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
