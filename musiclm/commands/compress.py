"""`musiclm compress` and `musiclm decompress`: audio ⇄ .mlc files with the neural codec.

Both only parse arguments and call `musiclm.compress`; all errors are MusicLMError (one line, exit 2).
"""

from __future__ import annotations

import argparse
import sys

from musiclm.errors import MusicLMError

COMPRESS_HELP = """Compress audio (wav, flac, ogg, mp3; any rate and channel count) to an .mlc file.

examples:
  musiclm compress song.flac song.mlc                 # 6 kbps with the shipped codec
  musiclm compress song.wav song.mlc --bandwidth 12 --entropy
  cat song.wav | musiclm compress - - > song.mlc      # '-' is stdin/stdout
"""

DECOMPRESS_HELP = """Decode an .mlc file back to audio at its original sample rate and channel count.

The output format follows the extension (.wav, .flac, .ogg); '-' writes WAV to stdout.
examples:
  musiclm decompress song.mlc song.wav
  musiclm decompress - - < song.mlc | aplay
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compress",
        help="compress audio to an .mlc file",
        description=COMPRESS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("input", help="audio file, or '-' for stdin")
    p.add_argument("output", help=".mlc file, or '-' for stdout")
    p.add_argument(
        "-b",
        "--bandwidth",
        type=float,
        default=None,
        help="target kbps, one the codec offers (default: 6 if offered, else the highest)",
    )
    p.add_argument("--codec", default=None, help="codec directory (default: the shipped codec)")
    p.add_argument(
        "--entropy", action="store_true", help="range-code the tokens with an adaptive model (smaller, slower)"
    )
    p.add_argument(
        "--chunk-seconds",
        type=float,
        default=10.0,
        help="audio per independent chunk (default 10); memory grows with it",
    )
    p.add_argument("-f", "--force", action="store_true", help="overwrite the output if it exists")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_compress)

    d = subparsers.add_parser(
        "decompress",
        help="decode an .mlc file to audio",
        description=DECOMPRESS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    d.add_argument("input", help=".mlc file, or '-' for stdin")
    d.add_argument("output", help="audio file (.wav, .flac, .ogg), or '-' for WAV on stdout")
    d.add_argument(
        "--codec",
        default=None,
        help="codec directory (default: the shipped codec); must be the codec that encoded the file",
    )
    d.add_argument("-f", "--force", action="store_true", help="overwrite the output if it exists")
    d.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run_decompress)


def _os_errors(fn):
    """Disk full, permission denied, a closed pipe on stdin...: one line, not a traceback."""
    try:
        return fn()
    except OSError as e:
        if isinstance(e, BrokenPipeError):
            raise
        where = f"{e.filename}: " if getattr(e, "filename", None) else ""
        raise MusicLMError(f"{where}{e.strerror or e}") from None


def _no_binary_to_terminal(output: str) -> None:
    if output == "-" and sys.stdout.isatty():
        raise MusicLMError("refusing to write binary data to a terminal; redirect stdout or name a file")


def run_compress(args: argparse.Namespace) -> int:
    from musiclm.compress import compress

    _no_binary_to_terminal(args.output)

    header = _os_errors(
        lambda: compress(
            args.input,
            args.output,
            codec=args.codec,
            bandwidth=args.bandwidth,
            entropy=args.entropy,
            force=args.force,
            chunk_seconds=args.chunk_seconds,
            progress=False if args.quiet else None,
        )
    )
    if args.output != "-" and not args.quiet:
        from pathlib import Path

        kbps = Path(args.output).stat().st_size * 8 / header.duration / 1000
        print(
            f"{args.output}: {header.duration:.1f} s at {header.bandwidth:g} kbps nominal, {kbps:.2f} kbps on disk",
            file=sys.stderr,
        )
    return 0


def run_decompress(args: argparse.Namespace) -> int:
    from musiclm.compress import decompress

    _no_binary_to_terminal(args.output)

    _os_errors(
        lambda: decompress(
            args.input, args.output, codec=args.codec, force=args.force, progress=False if args.quiet else None
        )
    )
    return 0
