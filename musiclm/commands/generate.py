"""`musiclm generate`: text prompts → audio files, with the shipped model or `--model DIR`.

Examples:
  musiclm generate "slow melancholic string quartet in D minor" -o out.wav
  musiclm generate "calm piano" "fast folk flute" -o demo/x.wav --duration 8 --seed 1   # demo/x-1.wav, x-2.wav
  musiclm generate --prompts prompts.txt -o out/ --format flac
  musiclm generate "the same, brighter" --continue intro.wav --duration 20 -o longer.wav
"""

from __future__ import annotations

import argparse
import math
import re
import sys
import time
from pathlib import Path

from musiclm.errors import MusicLMError

FORMATS = ("wav", "flac")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "generate",
        help="text → music",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("prompts", nargs="*", metavar="PROMPT", help="text description(s); one file per prompt")
    p.add_argument(
        "-o",
        "--output",
        help="output file (several prompts: NAME-1.wav, NAME-2.wav, ...) or an "
        "existing directory / a path ending in '/' (one file per prompt, named after it); "
        "default: named after the prompt in the current directory",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=10.0,
        help="seconds of audio (with --continue: the total, prompt included); longer than the "
        "model's window continues window by window (default 10)",
    )
    p.add_argument(
        "--seed", type=int, help="random seed: the same seed gives the same audio (default: random, printed)"
    )
    p.add_argument(
        "--cfg",
        type=float,
        help="classifier-free guidance: 1 = off, higher follows the text more closely (default: the model's, 3)",
    )
    p.add_argument("--temperature", type=float, help="sampling temperature; 0 = greedy (default: the model's, 1)")
    p.add_argument("--top-k", type=int, help="sample among the K likeliest tokens; 0 = off (default: the model's)")
    p.add_argument("--top-p", type=float, help="nucleus sampling mass; 0 = off (default: the model's)")
    p.add_argument(
        "--model",
        metavar="DIR",
        help="model directory (default: the shipped model); a transformers MusicGen directory also works",
    )
    p.add_argument(
        "--prompts",
        dest="prompts_file",
        metavar="FILE",
        help="read prompts from FILE, one per line ('#' comments and blank lines skipped)",
    )
    p.add_argument("--continue", dest="continue_wav", metavar="WAV", help="continue this audio file")
    p.add_argument("--format", choices=FORMATS, help="output format (default: from the -o suffix, else wav)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts generated together (default 8)")
    p.add_argument(
        "--fp32",
        action="store_true",
        help="sample in full fp32 (default: a bf16 KV cache and attention where the CPU or GPU computes bf16 "
        "natively, which is faster and gives slightly different tokens)",
    )
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"), help="default: cuda if present")
    p.add_argument("--force", action="store_true", help="overwrite existing output files")
    p.set_defaults(func=run)


def read_prompts(args: argparse.Namespace) -> list[str]:
    prompts = [p.strip() for p in args.prompts if p.strip()]
    if args.prompts_file:
        path = Path(args.prompts_file)
        if not path.is_file():
            raise MusicLMError(f"prompts file not found: {path}")
        lines = path.read_text(encoding="utf-8").splitlines()
        prompts += [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]
    if not prompts:
        raise MusicLMError("no prompt given: pass a text prompt or --prompts FILE")
    return prompts


def slug(text: str, limit: int = 48) -> str:
    words = re.findall(r"[a-z0-9]+", text.lower())
    return "_".join(words)[:limit].strip("_") or "music"


def output_paths(prompts: list[str], output: str | None, fmt: str | None) -> tuple[list[Path], str]:
    """Where each prompt's audio goes, and the format to write."""
    as_dir = output is not None and (output.endswith(("/", "\\")) or Path(output).is_dir())
    if output is None or as_dir:
        fmt = fmt or "wav"
        folder = Path(output) if output else Path(".")
        names = [slug(p) for p in prompts]
        paths = [folder / (f"{n}.{fmt}" if names.count(n) == 1 else f"{n}-{i + 1}.{fmt}") for i, n in enumerate(names)]
        return paths, fmt
    path = Path(output)
    suffix = path.suffix.lstrip(".").lower()
    fmt = fmt or (suffix if suffix in FORMATS else "wav")
    if suffix not in FORMATS:
        path = path.with_name(path.name + f".{fmt}") if not suffix else path
    if len(prompts) == 1:
        return [path], fmt
    return [path.with_name(f"{path.stem}-{i + 1}{path.suffix}") for i in range(len(prompts))], fmt


def run(args: argparse.Namespace) -> int:
    import torch

    from musiclm.audio import load_audio, save_audio
    from musiclm.generate import generate_wav, load_model

    prompts = read_prompts(args)
    if not (args.duration > 0 and math.isfinite(args.duration)):
        raise MusicLMError(f"--duration must be a positive number of seconds, got {args.duration}")
    if args.batch_size < 1:
        raise MusicLMError(f"--batch-size must be >= 1, got {args.batch_size}")
    paths, fmt = output_paths(prompts, args.output, args.format)
    existing = [str(p) for p in paths if p.exists()]
    if existing and not args.force:  # refuse before any slow work
        raise MusicLMError(f"{existing[0]} exists; pass --force to overwrite")
    if args.device == "cuda" and not torch.cuda.is_available():
        raise MusicLMError("--device cuda: no CUDA device available")
    device = args.device if args.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if args.model is not None and not Path(args.model).exists():
        raise MusicLMError(f"model directory not found: {args.model}")
    model = load_model(args.model, device=device)
    codec = model.codec
    prompt_wav = None
    if args.continue_wav:
        wav, _ = load_audio(args.continue_wav, sample_rate=codec.sample_rate, channels=codec.channels)
        prompt_wav = wav[None]  # [1, C, N]
    seed = args.seed if args.seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
    if args.seed is None:
        print(f"seed {seed}", file=sys.stderr)

    start = time.perf_counter()
    for first in range(0, len(prompts), args.batch_size):
        batch = prompts[first : first + args.batch_size]
        # a batch's seed is offset by its first prompt's index, so batches do not repeat each other
        wav = generate_wav(
            model,
            batch,
            duration=args.duration,
            seed=seed + first,
            cfg=args.cfg,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            prompt_wav=prompt_wav,
            progress=True,
            fp32=args.fp32,
        )
        for i, audio in enumerate(wav):
            path = paths[first + i]
            save_audio(path, audio, codec.sample_rate, format=fmt)
            print(f"wrote {path} ({audio.shape[-1] / codec.sample_rate:.2f} s, {codec.sample_rate} Hz): {batch[i]!r}")
    elapsed = time.perf_counter() - start
    total = args.duration * len(prompts)
    print(f"generated {total:.1f} s of audio in {elapsed:.1f} s ({total / elapsed:.2f}x real time)", file=sys.stderr)
    return 0
