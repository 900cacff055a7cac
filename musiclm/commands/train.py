"""`musiclm train codec|lm`: train the audio codec or the music language model from a YAML recipe.

Examples:
  musiclm train codec --config configs/codec/small.yaml --out runs/codec-small
  musiclm train codec --out runs/codec-small --resume            # continue exactly where it stopped
  musiclm train codec --config configs/codec/small.yaml --devices 2 --strategy ddp
  musiclm train lm --config configs/lm/default.yaml --shards data/shards/synth --codec checkpoints/codec

A run directory holds config.yaml, checkpoints/last.ckpt (resume), export/ (the model as config.json +
model.safetensors, usable with --model/from_pretrained), CSV and wandb (offline) logs, and audio samples.
SIGTERM or Ctrl-C saves a checkpoint before stopping; a second Ctrl-C stops at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "train",
        help="train the codec or the language model",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="what", metavar="WHAT", required=True)
    for what, help_text in (
        ("codec", "train the audio codec (EnCodec-style, RVQ)"),
        ("lm", "train the text-to-music language model over token shards"),
    ):
        q = sub.add_parser(
            what, help=help_text, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        q.add_argument("--config", help=f"YAML recipe, e.g. configs/{what}/small.yaml (not needed with --resume)")
        q.add_argument("--out", help="run directory (default: runs/<config name>)")
        q.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
        q.add_argument(
            "--refresh-data",
            action="store_true",
            help="with --resume: re-read the manifests (e.g. a corpus that grew); the data order "
            "of the remaining steps then differs from an uninterrupted run",
        )
        q.add_argument("--force", action="store_true", help="start over in a run directory that holds a run")
        q.add_argument("--max-steps", type=int, help="override trainer.max_steps")
        q.add_argument("--devices", type=int, help="devices per node (Lightning)")
        q.add_argument("--num-nodes", type=int, help="nodes (Lightning)")
        q.add_argument(
            "--threads",
            type=int,
            help="override trainer.num_threads (CPU; 1 is fastest on a "
            "busy machine: two threads fighting other processes can be several times slower)",
        )
        q.add_argument("--strategy", choices=["auto", "ddp", "ddp_spawn", "fsdp"], help="Lightning strategy")
        q.add_argument(
            "--set",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override any config field, e.g. --set optim.lr=1e-4 --set loss.adversarial=true "
            "(VALUE is YAML; repeatable; also on --resume)",
        )
        q.add_argument(
            "--init-from",
            metavar="DIR",
            help="start from this exported model directory (e.g. the "
            "shipped one) instead of random weights; a new run only",
        )
        if what == "lm":
            q.add_argument("--shards", nargs="+", metavar="DIR", help="override data.shards (token shard dirs)")
            q.add_argument("--codec", metavar="DIR", help="override codec: the codec the shards were made with")
            q.add_argument("--tokenizer", metavar="FILE", help="override data.tokenizer (SentencePiece model)")
        q.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from musiclm.errors import MusicLMError
    from musiclm.training.runner import trainer_overrides

    if args.out:
        run_dir = Path(args.out)
    elif args.config:
        run_dir = Path("runs") / f"{args.what}-{Path(args.config).stem}"
    else:
        raise MusicLMError("give --out (the run directory) or --config")
    overrides = trainer_overrides(args.devices, args.num_nodes, args.strategy, args.max_steps, args.threads)
    if args.init_from:
        overrides["init_from"] = args.init_from
    for item in args.set:
        _set(overrides, item)
    if args.what == "codec":
        from musiclm.training.recipes import train_codec

        train_codec(args.config, run_dir, args.resume, args.force, overrides, args.refresh_data)
    else:
        from musiclm.training.recipes import train_lm

        data = {k: v for k, v in (("shards", args.shards), ("tokenizer", args.tokenizer)) if v}
        if data:
            overrides["data"] = data
        if args.codec:
            overrides["codec"] = args.codec

        train_lm(args.config, run_dir, args.resume, args.force, overrides)
    print(f"run directory: {run_dir} (model in {run_dir / 'export'})")
    return 0


def _set(overrides: dict, item: str) -> None:
    """'a.b.c=VALUE' → overrides["a"]["b"]["c"] = yaml(VALUE); the config loader rejects unknown keys."""
    import yaml

    from musiclm.errors import MusicLMError

    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise MusicLMError(f"--set {item!r}: expected KEY=VALUE, e.g. optim.lr=1e-4")
    *parents, leaf = key.strip().split(".")
    node = overrides
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise MusicLMError(f"--set {item!r}: {part} is not a section")
    parsed = yaml.safe_load(value)
    if isinstance(parsed, str):
        try:
            parsed = float(parsed)  # YAML 1.1 reads 1e-4 (no dot) as a string
        except ValueError:
            pass
    node[leaf] = parsed
