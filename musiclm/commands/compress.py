"""`musiclm compress` and `musiclm decompress`: audio ⇄ .mlc files with the neural codec.

Both only parse arguments and call `musiclm.compress`; errors are MusicLMError (one line, exit 2). Ctrl-C
and SIGTERM stop at the next safe point (musiclm.files): one line, exit 130 or 143, no part file left.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from musiclm.errors import MusicLMError

COMPRESS_HELP = """Compress audio (wav, flac, ogg, mp3; any rate and channel count) to .mlc files.

Each channel is coded on its own, so left and right stay apart: a stereo file takes twice the bandwidth
(--bandwidth is per channel; --mono codes a downmix). The codes are range-coded, so files land near the
nominal rate or under it: 6 kbps gives ~5.3 kbps on disk, 12 kbps ~9, 1.5 kbps ~1.5 even for 10 s (the same
codes and sound). --no-entropy bit-packs the codes.

examples:
  musiclm compress song.flac song.mlc                 # 6 kbps per channel with the shipped codec
  musiclm compress song.wav song.mlc --bandwidth 12 --no-entropy   # bit-packed at the nominal rate
  musiclm compress *.wav --out-dir mlc/               # many files, one model load
  musiclm compress song.wav song.mlc --search 100     # ~8x slower than real time: more notes kept, same format
  cat song.wav | musiclm compress - - > song.mlc      # '-' is stdin/stdout; a WAV on stdin is streamed
"""

DECOMPRESS_HELP = """Decode .mlc files back to audio at their original sample rate and channel count.

The output format follows the extension (.wav, .flac, .ogg); '-' writes WAV to stdout.
examples:
  musiclm decompress song.mlc song.wav
  musiclm decompress *.mlc --out-dir wav/ --format flac
  musiclm decompress - - < song.mlc | aplay
  musiclm decompress damaged.mlc song.wav --recover   # damaged chunks become silence (exit status 1)
"""


def _steps(text: str) -> int:
    try:
        steps = int(text)
    except ValueError:
        steps = -1
    if not 0 <= steps <= 1000:
        raise argparse.ArgumentTypeError(f"expected a whole number of steps from 0 to 1000, got {text!r}")
    return steps


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compress",
        help="compress audio to .mlc files",
        description=COMPRESS_HELP,
        usage="musiclm compress [options] INPUT OUTPUT.mlc | INPUT... --out-dir DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="+", metavar="PATH", help="INPUT OUTPUT.mlc ('-' for stdin/stdout), or inputs")
    p.add_argument("-o", "--out-dir", type=Path, help="write INPUT... as DIR/NAME.mlc (one model load for all)")
    p.add_argument(
        "-b",
        "--bandwidth",
        type=float,
        default=None,
        help="target kbps per channel, one the codec offers (default: 6 if offered, else the highest)",
    )
    p.add_argument("--mono", action="store_true", help="code a downmix to one channel (half the size of stereo)")
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    p.add_argument(
        "--entropy",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="range-code the tokens with an adaptive model (default: on; files 1-9 %% smaller at 1.5-3 kbps, "
        "9-15 %% at 6, 24-30 %% at 12; decoding 5-15 %% slower); --no-entropy bit-packs them",
    )
    p.add_argument(
        "--band-gains",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="send the spectrum's level in semitone bands every 80 ms in place of 1 kbps of codes (every 40 ms "
        "for 2 kbps at 12 kbps and up), so the "
        "decoder's notes come back at their level (default: on at 6 kbps and up with range coding); "
        "--no-band-gains sends all codes and broadband level corrections",
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=10.0,
        help="audio per independent chunk (default 10); memory grows with it",
    )
    p.add_argument(
        "--search",
        type=_steps,
        default=0,
        metavar="STEPS",
        help="choose the codes by analysis by synthesis: STEPS decoder passes per chunk (slower encoding, "
        "the same format and decoding; 0, the default, is off)",
    )
    p.add_argument("-f", "--force", action="store_true", help="overwrite outputs that exist")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    p.set_defaults(func=run_compress)

    d = subparsers.add_parser(
        "decompress",
        help="decode .mlc files to audio",
        description=DECOMPRESS_HELP,
        usage="musiclm decompress [options] INPUT.mlc OUTPUT | INPUT.mlc... --out-dir DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("paths", nargs="+", metavar="PATH", help="INPUT OUTPUT (.wav .flac .ogg, '-'), or inputs")
    d.add_argument("-o", "--out-dir", type=Path, help="write INPUT... as DIR/NAME.FORMAT (one model load)")
    d.add_argument("--format", choices=["wav", "flac", "ogg"], default="wav", help="with --out-dir (default wav)")
    d.add_argument(
        "--codec",
        default=None,
        help="codec directory (default: the shipped codec); must be the codec that encoded the file",
    )
    d.add_argument(
        "--recover", action="store_true", help="turn damaged chunks into silence, name them, write the rest (exit 1)"
    )
    d.add_argument("-f", "--force", action="store_true", help="overwrite outputs that exist")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_decompress)


def _jobs(paths: list[str], out_dir: Path | None, suffix: str) -> list[tuple[str, str]]:
    """(input, output) pairs: `IN OUT`, or every path into `out_dir` under its own name."""
    if out_dir is None:
        if len(paths) != 2:
            raise MusicLMError(f"give INPUT OUTPUT, or several inputs with --out-dir DIR (got {len(paths)} paths)")
        return [(paths[0], paths[1])]
    if "-" in paths:
        raise MusicLMError("'-' (stdin) cannot be combined with --out-dir; give file names")
    if out_dir.exists() and not out_dir.is_dir():
        raise MusicLMError(f"{out_dir}: not a folder")
    jobs = [(p, str(out_dir / (Path(p).stem + suffix))) for p in paths]
    seen: dict[str, str] = {}
    for src, dst in jobs:
        if dst in seen:
            raise MusicLMError(f"{seen[dst]} and {src} would both be written to {dst}")
        seen[dst] = src
    return jobs


def _os_errors(fn):
    """Permission denied, a closed pipe on stdin...: one line, not a traceback."""
    try:
        return fn()
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        from musiclm.files import describe_os_error

        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        raise MusicLMError(f"{where}{describe_os_error(e)}") from None


def _no_binary_to_terminal(output: str) -> None:
    if output == "-" and sys.stdout.isatty():
        raise MusicLMError("refusing to write binary data to a terminal; redirect stdout or name a file")


def _each(jobs: list[tuple[str, str]], work) -> int:
    """Run `work(src, dst)` for each job; in a batch a failed file is one line and the others still run."""
    if len(jobs) == 1:
        _os_errors(lambda: work(*jobs[0]))
        return 0
    failed = 0
    for src, dst in jobs:
        try:
            _os_errors(lambda src=src, dst=dst: work(src, dst))
        except MusicLMError as e:
            failed += 1
            print(f"musiclm: error: {e}", file=sys.stderr)
    if failed:
        print(f"musiclm: {failed} of {len(jobs)} files failed", file=sys.stderr)
    return 2 if failed else 0


def _with_signals(run):
    def wrapped(args: argparse.Namespace) -> int:
        from musiclm.files import Interrupted, deferred_signals

        try:
            with deferred_signals():
                return run(args)
        except Interrupted as e:
            print(f"musiclm: {'interrupted' if e.exit_code == 130 else 'terminated'}", file=sys.stderr)
            return e.exit_code

    return wrapped


@_with_signals
def run_compress(args: argparse.Namespace) -> int:
    jobs = _jobs(args.paths, args.out_dir, ".mlc")
    _no_binary_to_terminal(jobs[0][1])
    from musiclm.codec.search import SearchSettings
    from musiclm.compress import compress, load_codec

    codec = args.codec if len(jobs) == 1 else load_codec(args.codec)  # one load for the batch

    def work(src: str, dst: str) -> None:
        header = compress(
            src,
            dst,
            codec=codec,
            bandwidth=args.bandwidth,
            entropy=args.entropy,
            band_gains=args.band_gains,
            mono=args.mono,
            force=args.force,
            chunk_seconds=args.chunk_seconds,
            progress=False if args.quiet else None,
            search=SearchSettings(steps=args.search) if args.search else None,
        )
        if dst != "-" and not args.quiet:
            kbps = Path(dst).stat().st_size * 8 / header.duration / 1000
            coded = f"{header.streams} channels coded separately, " if header.streams > 1 else ""
            print(
                f"{dst}: {header.duration:.1f} s, {coded}{header.kbps:g} kbps nominal, {kbps:.2f} kbps on disk",
                file=sys.stderr,
            )

    return _each(jobs, work)


@_with_signals
def run_decompress(args: argparse.Namespace) -> int:
    jobs = _jobs(args.paths, args.out_dir, "." + args.format)
    _no_binary_to_terminal(jobs[0][1])
    from musiclm.compress import decompress, load_codec

    codec = args.codec if len(jobs) == 1 else load_codec(args.codec)
    damaged: list[str] = []

    def report(damage) -> None:
        damaged.append(str(damage))
        print(f"musiclm: warning: {damage}", file=sys.stderr)

    def work(src: str, dst: str) -> None:
        before = len(damaged)
        decompress(
            src,
            dst,
            codec=codec,
            force=args.force,
            progress=False if args.quiet else None,
            on_damage=report if args.recover else None,
        )
        if len(damaged) > before:
            print(f"musiclm: {dst}: written with {len(damaged) - before} damaged part(s) made silent", file=sys.stderr)

    rc = _each(jobs, work)
    return rc or (1 if damaged else 0)
