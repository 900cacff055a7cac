"""The `musiclm` command: one entry point, one module per subcommand under `musiclm.commands`.

The CLI holds no model logic: each subcommand parses arguments and calls the Python API. A user error
(`MusicLMError`) prints one line on stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from musiclm import __version__
from musiclm.errors import MusicLMError

# Each module defines `register(subparsers)`, which adds its subcommand(s) with `set_defaults(func=...)`.
COMMAND_MODULES = [
    "musiclm.commands.generate",
    "musiclm.commands.compress",
    "musiclm.commands.finetune",
    "musiclm.commands.data",
    "musiclm.commands.train",
    "musiclm.commands.eval",
    "musiclm.commands.info",
    "musiclm.commands.serve",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="musiclm",
        description="Text to music with a learned audio codec, and a neural audio compressor.",
        epilog="Run `musiclm COMMAND --help` for the options of each command.",
    )
    parser.add_argument("--version", action="version", version=f"musiclm {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except MusicLMError as e:
        print(f"musiclm: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("musiclm: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout went away (`musiclm generate -o - | head -c 100`)
        _silence_stdout()
        return 1


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the exit's flush of what is left in its buffer does not fail again
    ("Exception ignored ... BrokenPipeError")."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # no real file descriptor (e.g. captured in tests)
        pass


if __name__ == "__main__":
    sys.exit(main())
