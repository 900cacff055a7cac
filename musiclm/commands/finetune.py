"""`musiclm finetune CATALOG_DIR --out DIR`: fine-tune the music LM on a folder of your own music.

Examples:
  musiclm finetune ~/music/my-album --out models/my-album
  musiclm generate "slow piano in my style" -o out.wav --model models/my-album
  musiclm finetune ~/music/my-album --out models/my-album --steps 400   # continue to 400 steps
  musiclm finetune ~/music/my-album --out models/my-album --full --lr 1e-4 --force

Captions come from sidecars (song.txt / song.json), captions.csv or metadata.jsonl, embedded tags, else
from analysis (tempo, key, loudness, brightness), as in `musiclm data index`. Files that cannot be read,
are silent or shorter than --min-duration are skipped and listed. A tenth of the files (at least one) is
held out: the held-out perplexity before and after fine-tuning is printed and kept in
OUT/finetune/report.json. Rerunning the same command resumes every stage where it stopped; Ctrl-C saves a
checkpoint first (and the model so far into OUT), then exits with status 130. OUT holds the model
(config.json, model.safetensors, tokenizer.model, codec/) and the work (OUT/finetune: manifest, token
shards, the training run with CSV logs). A catalog with nothing usable leaves no OUT behind.
"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "finetune",
        help="fine-tune the music LM on a folder of your own music",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("catalog", metavar="CATALOG_DIR", help="folder of audio files (wav, flac, ogg, mp3, aiff)")
    p.add_argument("--out", required=True, metavar="DIR", help="the fine-tuned model directory (and its work)")
    p.add_argument("--model", metavar="DIR", help="the LM to start from (default: the shipped model)")
    p.add_argument("--codec", metavar="DIR", help="tokenize with this codec instead of the model's own")
    p.add_argument("--steps", type=int, help="training steps in all (default: the recipe's, 200)")
    p.add_argument("--lr", type=float, help="peak learning rate (default: the recipe's, 3e-4)")
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--layers",
        type=int,
        default=2,
        metavar="N",
        help="train only the last N transformer blocks + the output heads (default: 2; 0: heads only)",
    )
    g.add_argument("--full", action="store_true", help="train every parameter (full fine-tuning)")
    p.add_argument("--heldout", type=float, default=0.1, help="fraction of files held out (default: 0.1)")
    p.add_argument("--min-duration", type=float, default=2.0, help="skip files shorter than this (s)")
    p.add_argument("--config", metavar="YAML", help="training recipe (default: configs/lm/finetune.yaml)")
    p.add_argument("--force", action="store_true", help="start over, discarding the work in --out")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclm.errors import MusicLMError
    from musiclm.finetune import finetune

    if args.steps is not None and args.steps < 1:
        raise MusicLMError("--steps must be at least 1")
    if args.lr is not None and not args.lr > 0:
        raise MusicLMError("--lr must be positive")
    if args.layers < 0:
        raise MusicLMError("--layers must be 0 or more (use --full to train everything)")
    if not 0 < args.heldout < 1:
        raise MusicLMError("--heldout must be between 0 and 1")
    report = finetune(
        args.catalog,
        args.out,
        model=args.model,
        codec=args.codec,
        steps=args.steps,
        lr=args.lr,
        train_layers=-1 if args.full else args.layers,
        heldout=args.heldout,
        min_duration=args.min_duration,
        config=args.config,
        force=args.force,
    )
    if report["interrupted"]:  # the run is checkpointed; the same command continues it
        print(f"musiclm: interrupted at step {report['steps']} of {report['max_steps']}", file=sys.stderr)
        return 130
    print(
        json.dumps({k: v for k, v in report.items() if k not in ("skipped", "ppl_k_before", "ppl_k_after")}, indent=2)
    )
    print(
        f"held-out perplexity {report['ppl_before']:.2f} -> {report['ppl_after']:.2f} "
        f"({len(report['heldout_files'])} files, {report['heldout_tokens']} tokens); "
        f"{len(report['skipped'])} files skipped"
    )
    print(f'wrote {report["model"]}  (musiclm generate "..." --model {report["model"]})')
    return 0
