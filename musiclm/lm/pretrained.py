"""LM model directories: config.json (model_type "musiclm-lm") + model.safetensors + tokenizer.model.

The config's `codec` entry names the codec directory relative to the model directory (the shipped layout
is checkpoints/musiclm/ with codec "../codec"), so the pair moves together and a copied model keeps
working. A transformers MusicGen directory is recognised by its model_type and converted on load.

config.json also records `codec_fingerprint`, the token space the LM was trained on (`Codec.fingerprint`):
a codec whose encoder or codebooks changed makes other tokens, and an LM paired with it would play noise, so
loading refuses the pair with one clear line instead.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file

from musiclm.config import from_dict, to_dict
from musiclm.errors import MusicLMError
from musiclm.nn.checkpoint import save_weights

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
TOKENIZER_NAME = "tokenizer.model"
MODEL_TYPE = "musiclm-lm"


def save_pretrained(
    model,
    directory: str | Path,
    codec_path: str | None = None,
    dtype: torch.dtype = torch.float32,
    codec_fingerprint: str | None = None,
) -> Path:
    """Write `model` (with its tokenizer) to `directory`; `codec_path` is stored relative to it.

    `dtype=torch.float16` halves the file (loading casts back to the model's float32 parameters).
    `codec_fingerprint` (default: `model.codec_fingerprint`, set by `attach_codec` and by loading) names the
    token space the LM was trained on."""
    from musiclm.config import override

    directory = Path(directory)
    if model.tokenizer is None:
        raise MusicLMError("cannot save an LM without its tokenizer: set model.tokenizer first")
    directory.mkdir(parents=True, exist_ok=True)
    config = model.config if codec_path is None else override(model.config, {"codec": codec_path})
    meta = {"model_type": MODEL_TYPE, **to_dict(config)}
    codec_fingerprint = codec_fingerprint or model.codec_fingerprint
    if codec_fingerprint is not None:
        meta["codec_fingerprint"] = codec_fingerprint
    (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
    # clone: tied tensors (T5's shared embedding) would otherwise be refused by safetensors
    state = {
        k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous().clone()
        for k, v in model.state_dict().items()
    }
    save_weights(state, directory / WEIGHTS_NAME, metadata={"model_type": MODEL_TYPE})
    if Path(model.tokenizer.path).resolve() != (directory / TOKENIZER_NAME).resolve():
        shutil.copyfile(model.tokenizer.path, directory / TOKENIZER_NAME)
    model.config = config
    return directory


def read_config(path: Path) -> dict:
    from musiclm.nn.checkpoint import read_config_json

    return read_config_json(path)


def load_state(path: Path, map_location: str = "cpu") -> dict[str, torch.Tensor]:
    weights = path / WEIGHTS_NAME
    if not weights.is_file():
        raise MusicLMError(f"{path}: missing {WEIGHTS_NAME}")
    try:
        return load_file(str(weights), device=map_location)
    except Exception as e:  # safetensors raises several types for corrupt files
        raise MusicLMError(f"{weights}: unreadable weights ({e})") from None


def load_weights(model, state: dict[str, torch.Tensor], where: Path) -> None:
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise MusicLMError(
            f"{where}: weights do not match the config (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )


def attach_codec(model, codec_dir: Path, expect_fingerprint: str | None = None) -> None:
    """Load the codec the LM was trained on and check it produces the tokens the LM expects: card, rates and,
    where the LM recorded one, the fingerprint of its token space."""
    from musiclm.codec import Codec

    codec = Codec.from_pretrained(codec_dir)
    if expect_fingerprint is not None and codec.fingerprint() != expect_fingerprint:
        raise MusicLMError(
            f"codec {codec_dir} makes other tokens (fingerprint {codec.fingerprint()}) than the LM was trained on "
            f"({expect_fingerprint}): pair the LM with its own codec, or re-tokenize and fine-tune it on this one"
        )
    c = model.config
    if codec.card != c.card:
        raise MusicLMError(f"codec {codec_dir} has {codec.card} entries per codebook, the LM expects {c.card}")
    if codec.config.n_q < c.n_q:
        raise MusicLMError(f"codec {codec_dir} has {codec.config.n_q} codebooks, the LM needs {c.n_q}")
    if abs(codec.frame_rate - c.frame_rate) > 1e-6 or codec.sample_rate != c.sample_rate:
        raise MusicLMError(
            f"codec {codec_dir} runs at {codec.sample_rate} Hz / {codec.frame_rate:g} frames/s, "
            f"the LM was trained at {c.sample_rate} Hz / {c.frame_rate:g} frames/s"
        )
    object.__setattr__(model, "codec", codec.eval())
    model.codec_fingerprint = codec.fingerprint()  # what it is trained on from now, or was (checked above)


def check_header(config, weights: Path) -> None:
    """config.json against the shapes in model.safetensors' header, before building (`musiclm.nn.checkpoint`)."""
    from musiclm.lm.model import MusicLM
    from musiclm.nn.checkpoint import check_counts, check_shapes, read_shapes

    shapes = read_shapes(weights)
    counts = [("n_layers", config.n_layers, "blocks.")]
    if config.text.kind == "trainable":
        counts.append(("text.n_layers", config.text.n_layers, "text_encoder.blocks."))
    elif config.text.kind == "t5" and isinstance((config.text.t5_config or {}).get("num_layers"), int):
        counts.append(
            ("text.t5_config.num_layers", config.text.t5_config["num_layers"], "text_encoder.t5.encoder.block.")
        )
    check_counts(shapes, weights, counts)
    check_shapes(lambda: MusicLM(config), shapes, weights)


def from_pretrained(path: str | Path | None = None, map_location: str = "cpu", load_codec: bool = True):
    from musiclm.lm.model import LMConfig, MusicLM
    from musiclm.paths import default_lm_dir
    from musiclm.text.tokenizer import TextTokenizer

    path = Path(path) if path is not None else default_lm_dir()
    if not path.exists():
        raise MusicLMError(f"model directory not found: {path}")
    if not path.is_dir():
        raise MusicLMError(f"{path}: not a model directory")
    meta = read_config(path)
    if meta.get("model_type") == "musicgen":
        from musiclm.lm.musicgen import load_musicgen

        return load_musicgen(path, map_location=map_location, load_codec=load_codec)
    if meta.pop("model_type", None) != MODEL_TYPE:
        raise MusicLMError(f"{path / CONFIG_NAME}: not a musiclm LM or MusicGen config")
    trained_fingerprint = meta.pop("codec_fingerprint", None)  # absent in directories saved before it existed
    config = from_dict(LMConfig, meta)
    check_header(config, path / WEIGHTS_NAME)  # before anything is allocated: the directory may be hostile
    tokenizer = TextTokenizer(path / TOKENIZER_NAME, add_eos=config.text.add_eos)
    if tokenizer.vocab_size != config.text.vocab_size:
        raise MusicLMError(
            f"{path / TOKENIZER_NAME}: {tokenizer.vocab_size} pieces, the model expects {config.text.vocab_size}"
        )
    model = MusicLM(config, tokenizer=tokenizer)
    load_weights(model, load_state(path, map_location), path)
    model.codec_fingerprint = trained_fingerprint  # kept when no codec is attached
    if load_codec and config.codec:
        attach_codec(model, (path / config.codec).resolve(), trained_fingerprint)
    return model.to(map_location).eval()
