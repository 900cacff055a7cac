"""`musiclm data synth|index|tokenize`: build training data.

synth     render a captioned corpus from the music21 corpus with FluidSynth (offline, deterministic)
index     caption a folder of your own audio (sidecars, captions.csv/metadata.jsonl, tags, or analysis)
tokenize  encode a manifest with a codec into token shards the LM trains from
"""

from __future__ import annotations

import argparse
import json
import math

from musiclm.errors import MusicLMError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "data",
        help="build training data (synth corpus, catalog index, token shards)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="data_command", metavar="SUBCOMMAND")

    s = sub.add_parser(
        "synth",
        help="render a captioned corpus from the music21 corpus with FluidSynth",
        description="Render real compositions (Bach chorales, Palestrina, string quartets, "
        "folk tunes, ...) with varied GM instruments, tempo, transposition and dynamics into "
        "10-30 s mono clips with captions. Resumable: run it again to continue or to grow "
        "the corpus with a larger --minutes. Deterministic in --seed.",
    )
    s.add_argument("--out", default="data/synth", help="output folder (default: data/synth)")
    s.add_argument("--minutes", type=float, default=10.0, help="minutes of audio to render, > 0 (default: 10)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--workers", type=int, default=2, help="parallel render processes (default: 2)")
    s.add_argument("--sample-rate", type=int, default=24000)
    s.add_argument("--soundfont", default=None, help="GM soundfont (default: FluidR3_GM from fluid-soundfont-gm)")
    s.add_argument("--format", default="flac", choices=("flac", "wav"), help="clip format (default: flac)")
    s.add_argument(
        "--only-split",
        default=None,
        choices=("train", "valid", "test"),
        help="render only works of this split (splits are by piece, the same in every corpus)",
    )
    s.set_defaults(func=run_synth)

    i = sub.add_parser(
        "index",
        help="caption a folder of your own audio into a manifest",
        description="Walk DIR for wav/flac/ogg/mp3. Captions come from, in order: a sidecar "
        ".txt/.json beside the file, a captions.csv or metadata.jsonl in the folder, embedded "
        "tags (title, artist, genre, BPM, key), else analysis (tempo, key, loudness, "
        "brightness). Bad files are skipped and listed in a report; reruns resume.",
    )
    i.add_argument("dir", help="folder of audio files")
    i.add_argument("--out", required=True, help="manifest file to write (JSONL); its report goes beside it")
    i.add_argument("--min-duration", type=float, default=2.0, help="skip files shorter than this (s)")
    i.add_argument("--force", action="store_true", help="re-index files already in the manifest")
    i.set_defaults(func=run_index)

    t = sub.add_parser(
        "tokenize",
        help="encode a manifest with a codec into token shards",
        description="Encode every clip of MANIFEST with the codec in --codec into safetensors "
        "shards plus index.jsonl. Resumable: clips already encoded are skipped.",
    )
    t.add_argument("manifest")
    t.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    t.add_argument("--out", required=True, help="shard directory")
    t.add_argument("--bandwidth", type=float, default=None, help="kbps (default: the codec's largest)")
    t.add_argument("--shard-frames", type=int, default=1_000_000, help="frames per shard file")
    t.add_argument("--device", default="cpu")
    t.set_defaults(func=run_tokenize)
    p.set_defaults(func=lambda a: (p.print_help(), 2)[1])


def _positive(value: float, flag: str) -> None:
    if not (value > 0 and math.isfinite(value)):  # also refuses NaN
        raise MusicLMError(f"{flag} must be a positive number, got {value}")


def run_synth(args: argparse.Namespace) -> int:
    from musiclm.data.synth import DEFAULT_SOUNDFONT, SynthConfig, build_corpus

    _positive(args.minutes, "--minutes")
    _positive(args.sample_rate, "--sample-rate")
    if args.workers < 1:
        raise MusicLMError(f"--workers must be at least 1, got {args.workers}")

    cfg = SynthConfig(
        out=args.out,
        minutes=args.minutes,
        seed=args.seed,
        workers=args.workers,
        sample_rate=args.sample_rate,
        soundfont=args.soundfont or DEFAULT_SOUNDFONT,
        audio_format=args.format,
        only_split=args.only_split,
    )
    summary = build_corpus(cfg)
    print(json.dumps(summary, indent=2))
    return 0


def run_index(args: argparse.Namespace) -> int:
    from musiclm.data.catalog import index_catalog

    if not (args.min_duration >= 0 and math.isfinite(args.min_duration)):
        raise MusicLMError(f"--min-duration must be a number of seconds >= 0, got {args.min_duration}")

    report = index_catalog(args.dir, args.out, min_duration=args.min_duration, force=args.force)
    print(json.dumps({k: v for k, v in report.items() if k != "skipped"}, indent=2))
    for item in report.get("skipped", []):
        print(f"skipped {item['path']}: {item['reason']}")
    return 0


def run_tokenize(args: argparse.Namespace) -> int:
    from musiclm.data.shards import tokenize_manifest

    if args.bandwidth is not None:
        _positive(args.bandwidth, "--bandwidth")
    if args.shard_frames < 1:
        raise MusicLMError(f"--shard-frames must be at least 1, got {args.shard_frames}")

    summary = tokenize_manifest(
        args.manifest,
        args.codec,
        args.out,
        bandwidth=args.bandwidth,
        shard_frames=args.shard_frames,
        device=args.device,
    )
    print(json.dumps(summary, indent=2))
    return 0
