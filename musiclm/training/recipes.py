"""The recipes behind `musiclm train codec|lm`: config → module → the shared runner."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from musiclm.errors import MusicLMError
from musiclm.paths import resolve_shipped
from musiclm.training.callbacks import AudioSamples
from musiclm.training.config import CodecTrainConfig, LMTrainConfig
from musiclm.training.runner import fit, prepare_run, save_config

# LMConfig fields that only shape training (read from the config at each step, no weights behind them): with
# init_from, a recipe may set them while the architecture and sampling defaults stay the model's
TRAINING_FIELDS = ("condition_dropout", "note_dropout", "chroma_share", "token_noise")


def recipe_lm_keys(config_path, overrides: dict[str, Any] | None) -> set[str]:
    """The `lm` fields a recipe file and its overrides set explicitly."""
    from musiclm.config import load_yaml

    keys = set((overrides or {}).get("lm", {}))
    if config_path is not None:
        keys |= set(load_yaml(resolve_shipped(config_path)).get("lm") or {})
    return keys


def train_codec(
    config_path: str | Path | None,
    run_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
    refresh_data: bool = False,
):
    """Train (or resume) a codec run in `run_dir`; returns the Lightning Trainer."""
    from musiclm.training.codec_module import build_codec_module

    run_dir = Path(run_dir)
    config = prepare_run(CodecTrainConfig, config_path, run_dir, resume, force, overrides or {})
    torch.manual_seed(config.trainer.seed)  # the initial weights (a resume overwrites them anyway)
    module = build_codec_module(config, run_dir, resume and not refresh_data)
    samples = AudioSamples(run_dir, config.trainer.sample_every, config.codec.sample_rate)
    return fit(module, config.trainer, run_dir, resume, callbacks=[samples])


def reinit_modules(model, patterns: list[str]) -> list[str]:
    """Draw the weights of every module whose name fully matches one of `patterns` afresh (the model's
    own initialisation; LayerNorms back to 1/0). Returns the names; none matching is an error."""
    import re

    from torch import nn

    hits = [
        (name, module)
        for name, module in model.named_modules()
        if name and any(re.fullmatch(p, name) for p in patterns)
    ]
    if not hits:
        raise MusicLMError(f"reinit {patterns} matches no module of the model")
    for _, module in hits:
        for sub in module.modules():
            if isinstance(sub, (nn.Linear, nn.Embedding)):
                model._init_weights(sub)
            elif isinstance(sub, nn.LayerNorm):
                sub.reset_parameters()
    return [name for name, _ in hits]


def train_lm(
    config_path: str | Path | None,
    run_dir: str | Path,
    resume: bool = False,
    force: bool = False,
    overrides: dict[str, Any] | None = None,
):
    """Train (or resume) an LM run in `run_dir` over token shards; returns the Lightning Trainer.

    The tokenizer is copied into the run directory on the first start, so a resume never depends on the
    file the config named. With `init_from` (fine-tuning) the model, its config and its tokenizer come from
    that LM directory, except the training-only fields (`TRAINING_FIELDS`: how conditions are dropped, token
    noise) that the recipe or `overrides` set: those say how to train, not what the model is. The resolved
    `lm` is written back to RUN_DIR/config.yaml, so a resume trains the same way."""
    from musiclm.lm import MusicLM
    from musiclm.notes.features import NUM_FEATURES
    from musiclm.text.tokenizer import TextTokenizer
    from musiclm.training.lm_module import LMModule, check_compatible
    from musiclm.training.token_dataset import load_token_items, trim_trailing_silence

    run_dir = Path(run_dir)
    config = prepare_run(LMTrainConfig, config_path, run_dir, resume, force, overrides or {})
    tokenizer_copy = run_dir / "tokenizer.model"
    torch.manual_seed(config.trainer.seed)  # the initial weights (a resume overwrites them anyway)
    if config.init_from:
        # from_pretrained returns eval mode; Lightning keeps it, which would turn condition dropout off
        model = MusicLM.from_pretrained(config.init_from, load_codec=False).train()
        asked = TRAINING_FIELDS if resume else recipe_lm_keys(config_path, overrides) & set(TRAINING_FIELDS)
        model.config = replace(model.config, **{name: getattr(config.lm, name) for name in sorted(asked)})
        if config.lm.note_presence and not model.config.note_presence:
            model.add_note_presence()  # zero at first: the model starts where init_from left it
        config.lm = model.config
        save_config(run_dir, config)
        if not tokenizer_copy.is_file():
            shutil.copyfile(model.tokenizer.path, tokenizer_copy)
        if config.reinit and not resume:  # a resume restores the trained weights anyway
            reinit_modules(model, config.reinit)
    else:
        if not tokenizer_copy.is_file():
            source = resolve_shipped(config.data.tokenizer)  # the shipped one when the path is relative
            if not source.is_file():
                raise MusicLMError(f"tokenizer model not found: {config.data.tokenizer}")
            shutil.copyfile(source, tokenizer_copy)
        model = MusicLM(config.lm)
    model.tokenizer = TextTokenizer(tokenizer_copy, add_eos=config.lm.text.add_eos)
    if model.tokenizer.vocab_size != config.lm.text.vocab_size:
        raise MusicLMError(
            f"the tokenizer has {model.tokenizer.vocab_size} pieces but lm.text.vocab_size is "
            f"{config.lm.text.vocab_size}; make them equal"
        )
    if config.train_only:
        prefixes = tuple(config.train_only)
        names = [n for n, _ in model.named_parameters()]
        if not any(n.startswith(prefixes) for n in names):
            raise MusicLMError(f"train_only {list(prefixes)} matches no parameter of the model")
        for name, p in model.named_parameters():
            p.requires_grad_(name.startswith(prefixes))  # frozen ones stay out of the optimizer
    if not config.data.shards:
        raise MusicLMError("data.shards is empty: name the token shard directories (musiclm data tokenize)")
    fingerprint = None
    if config.codec:
        from musiclm.lm.pretrained import attach_codec

        attach_codec(model, resolve_shipped(config.codec))  # checks card, frame rate and sample rate against the LM
        fingerprint = model.codec.fingerprint()
    notes = model.config.note_features > 0
    if model.config.note_features > NUM_FEATURES:
        raise MusicLMError(f"lm.note_features is {model.config.note_features}; the shards hold {NUM_FEATURES}")
    train_items = load_token_items(config.data.shards, config.data.split, config.lm.n_q, fingerprint, notes=notes)
    if config.data.trailing_silence_frames is not None:
        train_items = trim_trailing_silence(train_items, config.data.trailing_silence_frames)
    if not train_items:
        raise MusicLMError(f"no {config.data.split!r} items in {config.data.shards}")
    check_compatible(model, train_items)
    val_items = load_token_items(config.data.shards, config.data.val_split, config.lm.n_q, fingerprint, notes=notes)
    codec_dir = str(resolve_shipped(config.codec).resolve()) if config.codec else None
    module = LMModule(config, model, train_items, val_items, codec_dir)
    samples = AudioSamples(run_dir, config.trainer.sample_every, config.lm.sample_rate)
    val_every = config.trainer.val_every if val_items else 0
    return fit(
        module,
        config.trainer,
        run_dir,
        resume,
        callbacks=[samples],
        grad_clip=config.optim.grad_clip,
        val_every=val_every,
    )
