"""`musiclm serve`: a local studio page to make, hear and compress music in a browser.

The page (musiclm.web, Gradio: the optional [web] extra) listens on this machine only unless --host says
otherwise, sends nothing anywhere (no analytics, no share link), and runs one job at a time.

examples:
  musiclm serve                                  # http://127.0.0.1:7860/ with the shipped model and codec
  musiclm serve --port 8000 --model my_model/    # a fine-tuned model
  musiclm serve --host 0.0.0.0                   # reachable from other machines on the network (no login!)
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from musiclm.errors import MusicLMError


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="a local studio page: generate, hear and compress music in a browser",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--port", type=int, default=7860, help="port to listen on (default 7860)")
    p.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on (default 127.0.0.1: this machine only; 0.0.0.0 opens it to the network)",
    )
    p.add_argument("--model", metavar="DIR", help="model directory (default: the shipped model)")
    p.add_argument("--codec", metavar="DIR", help="codec directory for compression (default: the shipped codec)")
    p.add_argument(
        "--max-upload-mb", type=float, default=50.0, help="largest file the page accepts, in MB (default 50)"
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if present")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not 0 < args.port < 65536:
        raise MusicLMError(f"--port must be in 1..65535, got {args.port}")
    if not args.max_upload_mb > 0:
        raise MusicLMError(f"--max-upload-mb must be > 0, got {args.max_upload_mb}")
    for flag, path in (("--model", args.model), ("--codec", args.codec)):
        if path is not None and not Path(path).is_dir():
            raise MusicLMError(f"{flag} {path}: no such directory")
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        raise MusicLMError("--device cuda: no CUDA device available")
    from musiclm.web.server import serve
    from musiclm.web.studio import Studio

    studio = Studio(
        args.model, args.codec, None if args.device == "auto" else args.device, max_upload_mb=args.max_upload_mb
    )
    print("loading the model...", file=sys.stderr, flush=True)
    try:
        serve(studio, args.host, args.port, lambda url: print(f"musiclm studio: {url} (Ctrl-C stops it)", flush=True))
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM; the page is closed and the work folder removed by now
        print("musiclm: stopped", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(130)  # not sys.exit: Gradio's idle worker threads would hold the interpreter's exit ~30 s
    return 0
