"""Train the planner (issue 12, text → notes): build its data, train it through the shared runner, ship it.

    python train/train_planner.py --prepare                    # data/planner/cache from the music21 corpus
    python train/train_planner.py --config configs/planner/small.yaml --out runs/planner
    python train/train_planner.py --out runs/planner --resume  # continue (the saved config.yaml is used)
    python train/train_planner.py --config configs/planner/small_continue.yaml --out runs/planner2  # init_from
    python train/train_planner.py --out runs/planner --ship checkpoints/planner

Run it with `nice -n 15` and one thread on a shared machine; `max_cpu_minutes` in the recipe bounds a launch.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("WANDB_MODE", "offline")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--prepare", action="store_true", help="build the token cache (resumable), then exit")
    p.add_argument("--cache", default="data/planner/cache", help="cache folder for --prepare")
    p.add_argument("--limit", type=int, default=None, help="--prepare: at most this many pieces per source")
    p.add_argument("--config", help="recipe YAML (configs/planner/*.yaml)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--force", action="store_true", help="start over in a run directory that holds a run")
    p.add_argument("--max-steps", type=int)
    p.add_argument("--max-cpu-minutes", type=float, help="CPU-time limit of this launch")
    p.add_argument("--init-from", metavar="DIR", help="start from this planner's weights (e.g. checkpoints/planner)")
    p.add_argument("--ship", metavar="DIR", help="copy the run's exported planner to DIR (e.g. checkpoints/planner)")
    args = p.parse_args(argv)

    from musiclm.errors import MusicLMError

    try:
        if args.prepare:
            from musiclm.notes.corpus import build_cache

            print(build_cache(args.cache, limit=args.limit))
            return 0
        if not args.out:
            p.error("--out is required")
        run_dir = Path(args.out)
        if args.ship:
            return ship(run_dir / "export", Path(args.ship))
        train(args, run_dir)
        return 0
    except MusicLMError as e:
        print(f"train_planner: {e}", file=sys.stderr)
        return 1


def train(args, run_dir: Path) -> None:
    from musiclm.training.planner_module import PlannerModule, PlannerTrainConfig, TimeLimit
    from musiclm.training.runner import fit, prepare_run, trainer_overrides

    overrides = trainer_overrides(max_steps=args.max_steps)
    if args.max_cpu_minutes is not None:
        overrides["max_cpu_minutes"] = args.max_cpu_minutes
    if args.init_from:
        overrides["init_from"] = args.init_from
    config = prepare_run(PlannerTrainConfig, args.config, run_dir, args.resume, args.force, overrides)
    module = PlannerModule(config)
    fit(
        module,
        config.trainer,
        run_dir,
        args.resume,
        callbacks=[TimeLimit(config.max_cpu_minutes, config.max_wall_minutes)],
        grad_clip=config.optim.grad_clip,
        val_every=config.trainer.val_every,
    )


def ship(export: Path, dest: Path) -> int:
    """The export (config.json, model.safetensors in fp16, vocab.json) + the run's config.yaml as
    train_config.yaml replace `dest`."""
    from musiclm.errors import MusicLMError
    from musiclm.notes.model import Planner

    if not (export / "model.safetensors").is_file():
        raise MusicLMError(f"{export}: no exported planner yet")
    Planner.from_pretrained(export)  # refuse to ship something that does not load
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(export, tmp, ignore=shutil.ignore_patterns("step.txt"))
    if (export.parent / "config.yaml").is_file():  # the resolved recipe, as the other shipped models keep it
        shutil.copyfile(export.parent / "config.yaml", tmp / "train_config.yaml")
    if dest.exists():
        shutil.rmtree(dest)
    os.replace(tmp, dest)
    size = sum(f.stat().st_size for f in dest.iterdir()) / 1e6
    print(f"shipped {export} ({(export / 'step.txt').read_text().strip()} steps) to {dest}: {size:.1f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
