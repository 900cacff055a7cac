"""`musiclm eval`: figures people can read.

musiclm eval report --out outputs/report [--codec DIR] [--model DIR] [--runs runs/]
musiclm eval speed --codec DIR [--threads 1 2] [--seconds 10]
musiclm eval fd GENERATED_DIR REAL_DIR          # Fréchet distance over offline features
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from musiclm.errors import MusicLMError

DEFAULT_MANIFESTS = ("data/recorded/manifest.jsonl", "data/synth/manifest.jsonl")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "eval",
        help="evaluation figures and the HTML report",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="eval_command", metavar="WHAT")

    r = sub.add_parser(
        "report",
        help="write a static HTML report (index.html + images + audio)",
        description="Write DIR/index.html: codec metrics next to Opus, spectrograms, audio "
        "players, LM adherence/FD/diversity/perplexity, training curves. Sections whose "
        "inputs are missing say so.",
    )
    r.add_argument("--out", required=True, type=Path, help="output folder (index.html goes there)")
    r.add_argument("--codec", type=Path, help="codec directory (default: checkpoints/codec if present)")
    r.add_argument("--model", type=Path, help="LM directory (default: checkpoints/musiclm if present)")
    r.add_argument("--runs", type=Path, default=Path("runs"), help="folder with Lightning metrics.csv logs")
    r.add_argument(
        "--manifest",
        type=Path,
        action="append",
        help="manifest whose test split gives codec test clips; repeatable, first with test "
        f"clips wins (default: {', '.join(DEFAULT_MANIFESTS)})",
    )
    r.add_argument(
        "--lm-manifest",
        type=Path,
        default=Path("data/synth/manifest.jsonl"),
        help="real clips the generations are compared with",
    )
    r.add_argument(
        "--shards",
        type=Path,
        help="token shard directory whose test split scores perplexity "
        "(default: encode the --lm-manifest test split with the model's codec)",
    )
    r.add_argument("--clips", type=int, default=3, help="codec test clips (default 3)")
    r.add_argument("--clip-seconds", type=float, default=6.0)
    r.add_argument("--gen-seconds", type=float, default=6.0, help="length of each generation")
    r.add_argument("--cfg", type=float, default=3.0, help="guidance for generations (cfg=1 is also run)")
    r.add_argument(
        "--adherence-seeds", type=int, default=1, help="draws per adherence prompt (more: a larger n per control)"
    )
    r.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="thread counts for speed")
    r.add_argument("--force", action="store_true", help="overwrite an existing report")
    r.set_defaults(func=run_report)

    s = sub.add_parser("speed", help="codec speed (x real time) and peak memory per thread count")
    s.add_argument("--codec", type=Path, help="codec directory (default: the shipped codec)")
    s.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--seconds", type=float, default=10.0)
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    s.set_defaults(func=run_speed)

    f = sub.add_parser("fd", help="Fréchet distance between two folders of audio (hand-made features)")
    f.add_argument("generated", type=Path)
    f.add_argument("real", type=Path)
    f.set_defaults(func=run_fd)
    p.set_defaults(func=lambda args: p.print_help() or 2)


def run_report(args: argparse.Namespace) -> int:
    from musiclm.evaluation.report import ReportConfig, build_report, headline

    if args.clips < 1 or args.clip_seconds <= 0 or args.gen_seconds <= 0 or args.adherence_seeds < 1:
        raise MusicLMError("--clips, --clip-seconds, --gen-seconds and --adherence-seeds must be positive")
    for path, what in ((args.codec, "codec"), (args.model, "model")):
        if path is not None and not path.exists():
            raise MusicLMError(f"{what} directory not found: {path}")
    cfg = ReportConfig(
        out=args.out,
        codec=args.codec,
        model=args.model,
        runs=args.runs,
        manifests=tuple(args.manifest or [Path(m) for m in DEFAULT_MANIFESTS]),
        lm_manifest=args.lm_manifest,
        shards=args.shards,
        clips=args.clips,
        clip_seconds=args.clip_seconds,
        gen_seconds=args.gen_seconds,
        cfg=args.cfg,
        adherence_seeds=args.adherence_seeds,
        speed_threads=tuple(args.threads),
        force=args.force,
    )
    index = build_report(cfg)
    for line in headline(json.loads((index.parent / "figures.json").read_text())):
        print(line)
    print(f"wrote {index}")
    return 0


def run_speed(args: argparse.Namespace) -> int:
    from dataclasses import asdict

    from musiclm.evaluation.speed import measure_codec, measure_codec_subprocess
    from musiclm.paths import default_codec_dir

    codec_dir = args.codec or default_codec_dir()
    print(f"{'device':>6} {'threads':>7} {'kbps':>5} {'encode xRT':>10} {'decode xRT':>10} {'peak MB':>8}")
    for threads in args.threads:
        if args.device == "cuda":
            from musiclm.codec import Codec

            row = measure_codec(Codec.from_pretrained(codec_dir), args.seconds, threads, "cuda")
        else:
            row = measure_codec_subprocess(str(codec_dir), args.seconds, threads)
        print(
            f"{row.device:>6} {row.threads:>7} {row.bandwidth:>5g} {row.encode_x_realtime:>10.1f} "
            f"{row.decode_x_realtime:>10.1f} {row.peak_memory_mb or float('nan'):>8.0f}"
        )
        print(json.dumps(asdict(row)), file=sys.stderr)
    return 0


def run_fd(args: argparse.Namespace) -> int:
    from musiclm.audio import AUDIO_EXTENSIONS, load_audio
    from musiclm.evaluation.embedding import embed_clips
    from musiclm.evaluation.fad import diversity, frechet_distance

    sets = []
    for folder in (args.generated, args.real):
        files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS) if folder.is_dir() else []
        if len(files) < 2:
            raise MusicLMError(f"{folder}: need a folder with at least 2 audio files")
        sets.append(embed_clips([load_audio(p) for p in files]))
    print(
        f"FD {frechet_distance(*sets):.3f}  (generated n={len(sets[0])}, real n={len(sets[1])}; "
        f"diversity {diversity(sets[0]):.3f} vs {diversity(sets[1]):.3f})"
    )
    return 0
