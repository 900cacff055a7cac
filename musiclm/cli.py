"""The `musiclm` command: one entry point, one module per subcommand under `musiclm.commands`.

The CLI holds no model logic: each subcommand parses arguments and calls the Python API. A user error
(`MusicLMError`) prints one line on stderr and exits with status 2; no traceback.
"""

from __future__ import annotations

import argparse
import importlib
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
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a subcommand not written yet
                continue
            raise
        module.register(subparsers)
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
    except BrokenPipeError:
        return 1


if __name__ == "__main__":
    sys.exit(main())
