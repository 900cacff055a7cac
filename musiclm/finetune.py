"""Fine-tune the music LM on a folder of your own music (`musiclm finetune CATALOG --out DIR`).

    CATALOG --index_catalog--> OUT/finetune/catalog.jsonl (+ .report.json: skipped files and why)
      --held-out files (fixed on the first run, split.json)--> OUT/finetune/manifest.jsonl
      --tokenize_manifest with the model's own codec (copied to OUT/codec)--> OUT/finetune/shards/
      --train_lm: init_from the base LM, only the last N blocks + final norm + heads train--> OUT/finetune/run/
      --> OUT/config.json + model.safetensors + tokenizer.model (codec "codec"): `generate --model OUT`

Every stage resumes: indexing and tokenizing skip files already done, training continues from
OUT/finetune/run/checkpoints/last.ckpt, so rerunning the same command after an interruption (or with a
larger --steps) picks up where it stopped. Held-out perplexity is measured before and after on every
frame of the held-out files (by file: no held-out file is ever trained on).

A note-conditioned base (`note_features` > 0) fine-tunes on the chroma path: a catalog is audio only, so
each clip's notes are its audio chromagram (what `--melody tune.wav` gives) or none, in the base's own
proportions (`note_dropout`, `chroma_share`; the MIDI view falls back to the chroma), and the held-out
perplexity is scored with that chroma. The result keeps `note_features`: plans and `--melody` still work.

Why the last layers by default: with ~20 minutes of music, a few hundred steps on a CPU is the budget;
training the top blocks and the output heads adapts the token statistics to the catalog while the
embeddings, the text encoder and the lower blocks (what the model learned about music and captions from
its large corpus) stay as they were, backward passes stop at the first trained block, and the model
cannot drift far from the base in so few steps.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import time
from pathlib import Path

import torch

from musiclm.errors import MusicLMError

WORK = "finetune"  # OUT/finetune: the catalog, shards, training run and report
MODEL_FILES = ("config.json", "model.safetensors", "tokenizer.model")


def default_recipe() -> Path:
    from musiclm.paths import configs_dir  # package data in a wheel, the source tree in a checkout

    return configs_dir() / "lm" / "finetune.yaml"


def trainable_prefixes(n_layers: int, train_layers: int) -> list[str]:
    """Parameter-name prefixes that train: the last `train_layers` blocks + the final norm + the heads;
    [] (everything) when train_layers < 0 or covers every block and more."""
    if train_layers < 0:
        return []
    first = max(0, n_layers - train_layers)
    return [f"blocks.{i}." for i in range(first, n_layers)] + ["norm.", "heads."]


@torch.no_grad()
def heldout_perplexity(
    model, items, window: int, batch_size: int = 8, max_windows: int = 256, progress: bool = True
) -> dict:
    """Perplexity of `model` over every frame of `items` (TokenItem: codes [K, T] + caption), in windows of
    `window` frames scored by teacher forcing with their captions; eval mode (no condition dropout).
    A note-conditioned model hears each window's audio chroma (`note_view` "chroma"; none without one).
    Past `max_windows` an evenly spaced subset is scored (a large catalog's held-out part can be hours).
    Returns {"ppl": exp(mean CE over codebooks), "ppl_k": [K], "tokens": n}."""
    from tqdm import tqdm

    from musiclm.evaluation.lm_perplexity import lm_score_batch
    from musiclm.evaluation.perplexity import PerplexityAccumulator
    from musiclm.training.token_dataset import note_view

    model.eval()
    F = model.config.note_features
    windows = [
        (it.codes[:, s : s + window].long(), it.caption, note_view(it, "chroma", s, window, F) if F else None)
        for it in items
        for s in range(0, it.codes.shape[1], window)
    ]
    windows = windows[:: max(1, math.ceil(len(windows) / max_windows))]
    windows.sort(key=lambda w: -w[0].shape[1])  # similar lengths together: little padding
    acc = PerplexityAccumulator()
    for i in tqdm(
        range(0, len(windows), batch_size), desc="perplexity", unit="batch", disable=not progress, leave=False
    ):
        batch = windows[i : i + batch_size]
        T = batch[0][0].shape[1]
        # padding = the special id: apply_delay keeps it special, so it is neither a target nor seen by a
        # real position (causal)
        codes = torch.stack(
            [torch.nn.functional.pad(c, (0, T - c.shape[1]), value=model.special_id) for c, _, _ in batch]
        )  # [B, K, T]
        notes = torch.stack([n[:T] for _, _, n in batch]) if F else None  # [B, T, F], zeros past each end
        acc.update(*lm_score_batch(model, codes, [text for _, text, _ in batch], notes))
    ppl_k = acc.perplexity()
    return {
        "ppl": math.exp(sum(math.log(p) for p in ppl_k) / len(ppl_k)),
        "ppl_k": ppl_k,
        "tokens": int(acc.count.sum()),
    }


def choose_heldout(ids: list[str], fraction: float) -> list[str]:
    """round(fraction * n) files (at least one, never all), chosen by a stable hash of their id."""
    if len(ids) < 2:
        raise MusicLMError(f"need at least 2 usable audio files (one to train on, one held out); found {len(ids)}")
    k = min(len(ids) - 1, max(1, round(fraction * len(ids))))
    return sorted(sorted(ids, key=lambda i: hashlib.sha1(f"heldout:{i}".encode()).hexdigest())[:k])


def check_out(out: Path) -> Path | None:
    """Refuse an --out that cannot become a model folder (a file, under a file, not writable), before any
    slow work; return the topmost folder this run will create (None when `out` exists)."""
    if out.exists() and not out.is_dir():
        raise MusicLMError(f"--out {out} is a file, not a folder; name a folder for the fine-tuned model")
    created, folder = None, out
    while not folder.exists():
        created, folder = folder, folder.parent
    if not folder.is_dir():
        raise MusicLMError(f"cannot create {out}: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MusicLMError(f"cannot create {out}: {folder} is not writable")
    return created


def _remove_work(out: Path, created: Path | None) -> None:
    """Undo a fresh run that failed its data checks: the folders it created, never one that was there."""
    if created is not None:
        shutil.rmtree(created, ignore_errors=True)
        return
    shutil.rmtree(out / WORK, ignore_errors=True)
    shutil.rmtree(out / "codec", ignore_errors=True)


def _umask_modes(folder: Path) -> None:
    """The files of `folder` get the mode any new file gets, 0666 less the umask: safetensors (0.8) writes
    through a private temporary file and leaves 0600 (`Codec.save_pretrained` calls it directly)."""
    from musiclm.nn.checkpoint import new_file_mode

    for path in folder.iterdir():
        if path.is_file() and not path.is_symlink():
            os.chmod(path, new_file_mode())


def _prepare_out(out: Path, state: dict, force: bool) -> None:
    """Start over with --force; otherwise refuse a folder that is something else or another fine-tune."""
    work = out / WORK
    if force:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(out / "codec", ignore_errors=True)
        for name in MODEL_FILES:
            (out / name).unlink(missing_ok=True)
    state_path = work / "state.json"
    if state_path.is_file():
        old = json.loads(state_path.read_text())
        for key, what in (("catalog", "catalog"), ("base_model", "base model"), ("codec", "codec")):
            if old.get(key) != state[key]:
                raise MusicLMError(
                    f"{out} holds a fine-tune of {what} {old.get(key)}, not {state[key]}; use "
                    "another --out or pass --force to start over"
                )
        for key in ("train_only", "lr"):
            if state.get(key) is not None and old.get(key) != state[key]:
                print(f"musiclm: resuming {out}: keeping its {key} {old.get(key)} (--force to start over)")
        return
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise MusicLMError(f"{out} exists and is not a fine-tune folder; use another --out or pass --force")
    work.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(state, indent=2) + "\n")


def _split_manifest(catalog_manifest: Path, out_manifest: Path, heldout: float) -> tuple[list[str], int]:
    """The catalog rows with split "valid" for the held-out files, "train" for the rest. The held-out set
    is fixed on the first run (split.json): files added later train, so the shards never change split."""
    from musiclm.data.manifest import read_manifest, write_manifest

    rows = read_manifest(catalog_manifest)
    ids = [r["id"] for r in rows]
    split_path = out_manifest.with_name("split.json")
    if split_path.is_file():
        held = set(json.loads(split_path.read_text())["heldout"]) & set(ids)
        if not held:
            raise MusicLMError("every held-out file has left the catalog; pass --force to start over")
    else:
        held = set(choose_heldout(ids, heldout))
        split_path.write_text(json.dumps({"heldout": sorted(held)}, indent=2) + "\n")
    for r in rows:
        r["split"] = "valid" if r["id"] in held else "train"
    write_manifest(out_manifest, rows)
    return sorted(held), len(rows) - len(held)


def _prepare_data(base, catalog: Path, out: Path, heldout: float, min_duration: float, progress: bool, times: dict):
    """OUT/codec (the base's own codec), the catalog indexed and split, its token shards; → (held-out ids,
    train file count, index report, tokenize report, held-out token items). Raises MusicLMError when the
    catalog gives nothing to train or measure on."""
    from musiclm.data.catalog import index_catalog
    from musiclm.data.shards import tokenize_manifest
    from musiclm.lm.pretrained import attach_codec
    from musiclm.training.token_dataset import load_token_items

    work = out / WORK
    # The model's own codec travels with the result, so OUT works wherever it is copied.
    codec_dir = out / "codec"
    if not (codec_dir / "config.json").is_file():
        base.codec.save_pretrained(codec_dir)
        _umask_modes(codec_dir)
    attach_codec(base, codec_dir)  # also checks the copy against the LM (card, rates)

    t = time.time()
    index = index_catalog(catalog, work / "catalog.jsonl", min_duration=min_duration, progress=progress)
    for s in index["skipped"]:
        print(f"musiclm: skipped {s['path']}: {s['reason']}")
    if index["indexed"] == 0:
        first = index["skipped"][0]["reason"] if index["skipped"] else "?"
        raise MusicLMError(f"{catalog}: no usable audio ({index['files']} files, all skipped; first: {first})")
    held, n_train = _split_manifest(work / "catalog.jsonl", work / "manifest.jsonl", heldout)
    times["index_s"] = round(time.time() - t, 1)

    t = time.time()
    # the smallest bandwidth that gives the LM its codebooks: the RVQ stops there, the shards stay small
    enough = [b for b in base.codec.bandwidths if base.codec.config.n_q_for_bandwidth(b) >= base.n_q]
    bandwidth = min(enough) if enough else max(base.codec.bandwidths)
    tokens = tokenize_manifest(
        work / "manifest.jsonl", codec_dir, work / "shards", bandwidth=bandwidth, progress=progress
    )
    times["tokenize_s"] = round(time.time() - t, 1)
    notes = base.config.note_features > 0  # the shards' audio chroma comes along (a catalog has no MIDI)
    valid_items = load_token_items([str(work / "shards")], "valid", base.n_q, base.codec.fingerprint(), notes=notes)
    if not valid_items:
        raise MusicLMError(f"none of the held-out files {held} could be tokenized; pass --force to start over")
    return held, n_train, index, tokens, valid_items


def finetune(
    catalog: str | Path,
    out: str | Path,
    model: str | Path | None = None,
    codec: str | Path | None = None,
    steps: int | None = None,
    lr: float | None = None,
    train_layers: int = 2,
    heldout: float = 0.1,
    min_duration: float = 2.0,
    config: str | Path | None = None,
    force: bool = False,
    progress: bool = True,
) -> dict:
    """Fine-tune the LM in `model` (None: the shipped one) on the audio files under `catalog`; the result
    is a model directory `out` (`MusicLM.from_pretrained(out)`, `musiclm generate --model out`).

    train_layers: the last N transformer blocks + final norm + heads train (-1: every parameter).
    steps / lr: override the recipe (`config`, default configs/lm/finetune.yaml); a rerun resumes, and a
    larger `steps` continues the same run. Returns the report (also in OUT/finetune/report.json); after
    Ctrl-C / SIGTERM during training its "interrupted" is true (the model so far is in `out`, unmeasured).
    A fresh run whose catalog fails the data checks leaves no folder behind.
    """
    from musiclm.lm import MusicLM
    from musiclm.lm.pretrained import attach_codec
    from musiclm.paths import default_lm_dir
    from musiclm.training.callbacks import LAST_CKPT
    from musiclm.training.recipes import train_lm

    t_start = time.time()
    catalog, out = Path(catalog), Path(out)
    if not catalog.is_dir():
        raise MusicLMError(f"catalog folder not found: {catalog}")
    created = check_out(out)
    recipe = Path(config) if config else default_recipe()
    if not recipe.is_file():
        raise MusicLMError(f"fine-tuning recipe not found: {recipe}; pass one with --config")
    base_dir = Path(model) if model is not None else default_lm_dir()
    base = MusicLM.from_pretrained(base_dir)
    if codec is not None:
        attach_codec(base, Path(codec))
    if base.codec is None:
        raise MusicLMError(f"{base_dir}: the model names no codec to tokenize the catalog with; pass --codec")
    prefixes = trainable_prefixes(base.config.n_layers, train_layers)
    notes = "chroma" if base.config.note_features > 0 else None  # what a note-conditioned base hears
    if notes:
        print("musiclm: the base model is note-conditioned; your audio trains it on its chromagram (no MIDI)")
    state = {
        "catalog": str(catalog.resolve()),
        "base_model": str(base_dir.resolve()),
        "codec": str(Path(codec).resolve()) if codec is not None else None,
        "train_only": prefixes,
        "lr": lr,
    }
    fresh = force or not (out / WORK / "state.json").is_file()
    _prepare_out(out, state, force)
    work = out / WORK
    times: dict[str, float] = {}
    try:
        held, n_train, index, tokens, valid_items = _prepare_data(
            base, catalog, out, heldout, min_duration, progress, times
        )
    except MusicLMError:
        if fresh:  # an unusable catalog leaves no half-made model folder behind
            _remove_work(out, created)
        raise
    codec_dir = out / "codec"
    window = base.config.max_frames

    t = time.time()
    before = heldout_perplexity(base, valid_items, window, progress=progress)
    times["perplexity_before_s"] = round(time.time() - t, 1)

    run_dir = work / "run"
    resume = (run_dir / "checkpoints" / LAST_CKPT).is_file()
    step_file = run_dir / "export" / "step.txt"
    start_step = int(step_file.read_text()) if resume and step_file.is_file() else 0
    overrides: dict = {"trainer": {"max_steps": steps}} if steps is not None else {}
    if not resume:
        overrides.update(
            init_from=str(base_dir.resolve()),
            codec=str(codec_dir.resolve()),
            train_only=prefixes,
            data={"shards": [str((work / "shards").resolve())], "frames": window},
        )
        if lr is not None:
            overrides["optim"] = {"lr": lr}
    trainable = sum(p.numel() for n, p in base.named_parameters() if not prefixes or n.startswith(tuple(prefixes)))
    total = sum(p.numel() for p in base.parameters())
    del base
    t = time.time()
    trainer = train_lm(None if resume else recipe, run_dir, resume=resume, overrides=overrides)
    times["train_s"] = round(time.time() - t, 1)
    end_step, max_steps = int(trainer.global_step), int(trainer.max_steps)
    interrupted = end_step < max_steps  # Ctrl-C / SIGTERM: Checkpointer saved the run and stopped it
    if interrupted:
        print(f"musiclm: training stopped at step {end_step} of {max_steps}; rerun the same command to continue")

    after = None
    if not interrupted or (run_dir / "export" / "config.json").is_file():  # keep what was learned so far
        tuned = MusicLM.from_pretrained(run_dir / "export")  # the codec through the export's relative link
        if not interrupted:  # an interrupted run is measured when a rerun completes it
            t = time.time()
            after = heldout_perplexity(tuned, valid_items, window, progress=progress)
            times["perplexity_after_s"] = round(time.time() - t, 1)
        tuned.save_pretrained(out, codec_path="codec")
        MusicLM.from_pretrained(out, load_codec=True)  # what `generate --model OUT` does: fail here, not there
    times["total_s"] = round(time.time() - t_start, 1)

    report = {
        "model": str(out),
        "base_model": str(base_dir),
        "catalog": str(catalog),
        "files": index["files"],
        "indexed": index["indexed"],
        "minutes": index["minutes"],
        "skipped": [{"path": s["path"], "reason": s["reason"]} for s in index["skipped"]],
        "tokenize_skipped": tokens["skipped_reasons"],
        "caption_sources": index["caption_sources"],
        "heldout_files": held,
        "train_files": n_train,
        "heldout_tokens": before["tokens"],
        "train_only": prefixes or "all",
        "trainable_params": trainable,
        "total_params": total,
        "tokenized_now": tokens["encoded_now"],
        "start_step": start_step,
        "steps": end_step,
        "max_steps": max_steps,
        "notes": notes,
        "ppl_before": round(before["ppl"], 4),
        "ppl_after": round(after["ppl"], 4) if after else None,
        "ppl_k_before": [round(p, 4) for p in before["ppl_k"]],
        "ppl_k_after": [round(p, 4) for p in after["ppl_k"]] if after else None,
        "interrupted": interrupted,
        **times,
    }
    (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
