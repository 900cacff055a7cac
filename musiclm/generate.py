"""Text → music, the Python API: `generate(["calm piano in C major"], duration=8, seed=1) -> wav [B, C, N]`.

    captions --TextTokenizer--> ids/mask --MusicLM + musiclm.lm.sample--> codes [B, K, T]
             --codec.decode--> wav [B, C, N]

`MusicLM.generate` is the same call on a loaded model; `generate(model=None)` loads the shipped one.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.lm.model import MusicLM
from musiclm.lm.sample import SamplingParams, generate_codes

_loaded: dict[str, MusicLM] = {}


def load_model(model: str | Path | MusicLM | None = None, device: str | None = None) -> MusicLM:
    """A MusicLM: as given, loaded from a directory, or the shipped one (None); loads are cached."""
    if isinstance(model, MusicLM):
        return model
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    key = f"{Path(model).resolve() if model is not None else '<shipped>'}@{device}"
    if key not in _loaded:
        _loaded[key] = MusicLM.from_pretrained(model, map_location=device)
    return _loaded[key]


def sampling_params(
    model: MusicLM,
    cfg: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
) -> SamplingParams:
    """The model's shipped defaults, overridden where a value is given."""
    c = model.config
    params = SamplingParams(
        temperature=c.temperature if temperature is None else temperature,
        top_k=c.top_k if top_k is None else top_k,
        top_p=c.top_p if top_p is None else top_p,
        cfg=c.cfg if cfg is None else cfg,
    )
    params.check()
    return params


def generate_wav(
    model: MusicLM,
    texts: list[str] | str,
    duration: float = 10.0,
    seed: int | None = None,
    cfg: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    prompt_wav: Tensor | None = None,
    progress: bool = False,
    compile: bool = False,
    fp32: bool = False,
) -> Tensor:
    """Captions → wav [B, C, N] at `model.codec.sample_rate`, N = round(duration * sample_rate).

    prompt_wav [B or 1, C, N0] (at the codec's rate) is continued; `duration` counts it too.
    fp32: no reduced precision anywhere (default: bf16 where the hardware has it, see `musiclm.lm.sample`)."""
    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts:
        raise MusicLMError("no text prompt given")
    if model.tokenizer is None or model.codec is None:
        raise MusicLMError("this model has no tokenizer or codec attached; load it with MusicLM.from_pretrained")
    if not (duration > 0 and math.isfinite(duration)):
        raise MusicLMError(f"duration must be a positive number of seconds, got {duration}")
    codec = model.codec.to(model.device)
    n_frames = math.ceil(duration * codec.frame_rate)
    prompt = None
    if prompt_wav is not None:
        if prompt_wav.dim() != 3:
            raise MusicLMError(f"expected prompt audio shaped [B, C, N], got {list(prompt_wav.shape)}")
        prompt_seconds = prompt_wav.shape[-1] / codec.sample_rate
        if prompt_seconds >= duration:
            raise MusicLMError(
                f"the prompt ({prompt_seconds:.2f} s) must be shorter than --duration "
                f"({duration:g} s), which counts the prompt too"
            )
        prompt = codec.encode(prompt_wav.to(model.device), n_q=model.n_q)
    ids, mask = model.tokenizer.encode(texts, model.config.text.max_len)
    params = sampling_params(model, cfg, temperature, top_k, top_p)
    codes = generate_codes(
        model,
        ids,
        mask,
        n_frames,
        params,
        seed=seed,
        prompt=prompt,
        progress=progress,
        compile=compile,
        amp_dtype=None if fp32 else torch.bfloat16,
    )
    return codec.decode(codes, length=round(duration * codec.sample_rate))


def generate(
    texts: list[str] | str,
    model: str | Path | MusicLM | None = None,
    duration: float = 10.0,
    seed: int | None = None,
    cfg: float | None = None,
    temperature: float | None = None,
    top_k: int | None = None,
    top_p: float | None = None,
    prompt_wav: Tensor | None = None,
    progress: bool = False,
) -> Tensor:
    """Captions → wav [B, C, N] with the shipped model (or `model`: a directory or a loaded MusicLM)."""
    lm = load_model(model)
    return generate_wav(
        lm,
        texts,
        duration=duration,
        seed=seed,
        cfg=cfg,
        temperature=temperature,
        top_k=top_k,
        top_p=top_p,
        prompt_wav=prompt_wav,
        progress=progress,
    )
