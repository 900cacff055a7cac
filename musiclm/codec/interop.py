"""Loading official EnCodec weights (Défossez et al. 2022) a user has on disk into our `Codec`.

Two layouts are read, both mapped key by key onto our module tree (which mirrors the `encodec` package);
WN stands for `parametrizations.weight`:

    original `encodec` .th (bare state dict, e.g. encodec_24khz-d7cc33bc.th)
        encoder.model.{i}.conv.conv.weight_g        -> encoder.model.{i}.conv.conv.WN.original0
        decoder.model.{i}.convtr.convtr.weight_v    -> decoder.model.{i}.convtr.convtr.WN.original1
        quantizer.vq.layers.{k}._codebook.embed     -> quantizer.layers.{k}.embed
    transformers `EncodecModel` directory (config.json + model.safetensors; facebook/encodec_24khz, the
    32 kHz EnCodec of MusicGen)
        encoder.layers.{i}.conv.weight_g            -> encoder.model.{i}.conv.conv.WN.original0
        encoder.layers.{i}.block.{j}.conv.bias      -> encoder.model.{i}.block.{j}.conv.conv.bias
        decoder.layers.{i}.conv.* (a ConvTranspose) -> decoder.model.{i}.convtr.convtr.*
        quantizer.layers.{k}.codebook.embed         -> quantizer.layers.{k}.embed
    a transformers MusicGen directory holds the same under `audio_encoder.` (config: its `audio_encoder` part)

Weight norm may come as old-style `weight_g`/`weight_v` or as `parametrizations.weight.original0/1`
(what torch's parametrization API and transformers 5 save); g is original0, v is original1 in both.
The 48 kHz EnCodec (input normalisation, time_group_norm, 1 s overlapping segments) has no counterpart in
our codec and is refused.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors import safe_open
from torch import Tensor

from musiclm.codec.model import Codec, CodecConfig
from musiclm.codec.seanet import SConvTranspose1d, SEANetConfig
from musiclm.errors import MusicLMError

# EnCodec 24 kHz as built by `encodec.EncodecModel.encodec_model_24khz()`: the parts a bare .th state dict
# cannot tell (everything not visible in tensor shapes).
ENCODEC_24KHZ_SAMPLE_RATE = 24000
ENCODEC_24KHZ_BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)

# transformers `EncodecConfig` defaults: `save_pretrained` writes only the fields that differ from them.
TRANSFORMERS_DEFAULTS = {
    "target_bandwidths": [1.5, 3.0, 6.0, 12.0, 24.0],
    "sampling_rate": 24000,
    "audio_channels": 1,
    "normalize": False,
    "chunk_length_s": None,
    "hidden_size": 128,
    "num_filters": 32,
    "num_residual_layers": 1,
    "upsampling_ratios": [8, 5, 4, 2],
    "norm_type": "weight_norm",
    "kernel_size": 7,
    "last_kernel_size": 7,
    "residual_kernel_size": 3,
    "dilation_growth_rate": 2,
    "use_causal_conv": True,
    "pad_mode": "reflect",
    "compress": 2,
    "num_lstm_layers": 2,
    "trim_right_ratio": 1.0,
    "codebook_size": 1024,
    "codebook_dim": None,
    "use_conv_shortcut": True,
}

_WEIGHT_NORM = {"weight_g": "parametrizations.weight.original0", "weight_v": "parametrizations.weight.original1"}
_UNSUPPORTED_48KHZ = "48 kHz EnCodec (input normalisation, time_group_norm, overlapping segments) is not supported"


# ---- shared: key renaming, checking, loading ---------------------------------------------------------------
def _new_style_weight_norm(key: str) -> str:
    head, _, leaf = key.rpartition(".")
    return f"{head}.{_WEIGHT_NORM[leaf]}" if leaf in _WEIGHT_NORM else key


def _names(keys, limit: int = 6) -> str:
    keys = sorted(keys)
    more = f" (+{len(keys) - limit} more)" if len(keys) > limit else ""
    return ", ".join(keys[:limit]) + more


def _load_mapped(codec: Codec, state: dict[str, Tensor], source: Path) -> Codec:
    """Load `state` (already in our key names) into `codec` strictly; every mismatch is a MusicLMError."""
    ours = codec.state_dict()
    missing, unexpected = ours.keys() - state.keys(), state.keys() - ours.keys()
    if missing or unexpected:
        parts = [
            f"missing {_names(missing)}" if missing else "",
            f"unexpected {_names(unexpected)}" if unexpected else "",
        ]
        raise MusicLMError(
            f"{source}: weights do not match the EnCodec architecture: {'; '.join(p for p in parts if p)}"
        )
    converted = {}
    for key, value in state.items():
        if value.shape != ours[key].shape:
            raise MusicLMError(f"{source}: {key} has shape {list(value.shape)}, expected {list(ours[key].shape)}")
        # `inited` is a float flag in EnCodec and a bool buffer here; weights may be stored in half precision.
        converted[key] = value.to(ours[key].dtype)
    codec.load_state_dict(converted, strict=True)
    return codec.eval()


def _kernel(state: dict[str, Tensor], conv_prefix: str) -> Tensor:
    """The weight-norm direction v of a conv ([C_out, C_in, k]; [C_in, C_out, k] for a transposed conv)."""
    return state[f"{conv_prefix}.parametrizations.weight.original1"]


# ---- original `encodec` package .th ---------------------------------------------------------------------------
def _th_to_ours(key: str) -> str:
    key = _new_style_weight_norm(key)
    return re.sub(r"^quantizer\.vq\.layers\.(\d+)\._codebook\.", r"quantizer.layers.\1.", key)


def _infer_th_config(state: dict[str, Tensor], path: Path) -> CodecConfig:
    """Read every architecture field visible in tensor shapes; the rest is what EnCodec 24 kHz uses."""
    first = "encoder.model.0.conv.conv"
    if f"{first}.parametrizations.weight.original1" not in state:
        raise MusicLMError(f"{path}: not an EnCodec state dict (no {first}.weight_v)")
    n_filters, channels, kernel_size = _kernel(state, first).shape
    modules = sorted({int(m.group(1)) for k in state if (m := re.match(r"encoder\.model\.(\d+)\.", k))})
    kinds = {}
    for i in modules:
        prefix = f"encoder.model.{i}."
        if any(k.startswith(prefix + "block.") for k in state):
            kinds[i] = "res"
        elif any(k.startswith(prefix + "lstm.") for k in state):
            kinds[i] = "lstm"
        else:
            kinds[i] = "conv"
    convs = [i for i in modules if kinds[i] == "conv"]
    res_blocks = [i for i in modules if kinds[i] == "res"]
    # Strided convs sit between the first and the last conv, kernel = 2 * ratio; the encoder runs ratios reversed.
    down = [_kernel(state, f"encoder.model.{i}.conv.conv").shape[-1] // 2 for i in convs[1:-1]]
    last = _kernel(state, f"encoder.model.{convs[-1]}.conv.conv")
    lstm = sum(1 for k in state if re.fullmatch(r"encoder\.model\.\d+\.lstm\.weight_ih_l\d+", k))
    n_res = sum(1 for i in res_blocks if i < convs[1]) if len(convs) > 1 else 0
    res_kernel, compress, true_skip = 3, 2, True
    if res_blocks:
        block = _kernel(state, f"encoder.model.{res_blocks[0]}.block.1.conv.conv")
        res_kernel, compress = block.shape[-1], n_filters // block.shape[0]
        true_skip = not any(k.startswith(f"encoder.model.{res_blocks[0]}.shortcut.") for k in state)
    codebooks = sorted({int(m.group(1)) for k in state if (m := re.match(r"quantizer\.layers\.(\d+)\.embed$", k))})
    if not codebooks:
        raise MusicLMError(f"{path}: no quantizer codebooks (quantizer.vq.layers.*._codebook.embed)")
    card = state["quantizer.layers.0.embed"].shape[0]
    seanet = SEANetConfig(
        channels=channels,
        dimension=last.shape[0],
        n_filters=n_filters,
        n_residual_layers=n_res,
        ratios=tuple(reversed(down)),
        kernel_size=kernel_size,
        last_kernel_size=last.shape[-1],
        residual_kernel_size=res_kernel,
        dilation_base=2,
        causal=True,
        pad_mode="reflect",
        true_skip=true_skip,
        compress=compress,
        lstm=lstm,
        norm="weight_norm",
        trim_right_ratio=1.0,
    )
    config = CodecConfig(
        name="encodec_24khz",
        sample_rate=ENCODEC_24KHZ_SAMPLE_RATE,
        seanet=seanet,
        n_q=len(codebooks),
        card=card,
        bandwidths=ENCODEC_24KHZ_BANDWIDTHS,
        kmeans_iters=50,
    )
    # Keep the bandwidths this many codebooks can serve (EnCodec 24 kHz: all five with 32 codebooks).
    per_q = config.frame_rate * config.bits_per_codebook / 1000
    config.bandwidths = tuple(b for b in ENCODEC_24KHZ_BANDWIDTHS if b / per_q <= len(codebooks) + 1e-9)
    if not config.bandwidths:
        raise MusicLMError(f"{path}: {len(codebooks)} codebooks serve none of {list(ENCODEC_24KHZ_BANDWIDTHS)} kbps")
    return config


def load_encodec_th(path: Path) -> Codec:
    """Load an original `encodec` package checkpoint (the 24 kHz model's bare state dict) as our Codec."""
    path = Path(path)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and weights_only errors all mean "not a checkpoint we can read"
        raise MusicLMError(f"{path}: not a readable torch checkpoint ({type(e).__name__}: {e})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, Tensor) for v in raw.values()):
        raise MusicLMError(f"{path}: expected an EnCodec state dict (name -> tensor), got {type(raw).__name__}")
    if any(".norm." in k for k in raw):  # time_group_norm convs: only the 48 kHz model has them
        raise MusicLMError(f"{path}: {_UNSUPPORTED_48KHZ}")
    state = {_th_to_ours(k): v for k, v in raw.items()}
    try:
        config = _infer_th_config(state, path)
    except (KeyError, IndexError) as e:  # a layer the shapes were read from is missing
        raise MusicLMError(f"{path}: incomplete EnCodec state dict (no {e})") from None
    return _load_mapped(Codec(config), state, path)


# ---- transformers EncodecModel directory ----------------------------------------------------------------------
def _transformers_config(meta: dict, path: Path) -> CodecConfig:
    cfg = {**TRANSFORMERS_DEFAULTS, **{k: v for k, v in meta.items() if k in TRANSFORMERS_DEFAULTS}}
    if cfg["normalize"] or cfg["chunk_length_s"] is not None or cfg["norm_type"] != "weight_norm":
        raise MusicLMError(
            f"{path}: {_UNSUPPORTED_48KHZ} (normalize={cfg['normalize']}, "
            f"chunk_length_s={cfg['chunk_length_s']}, norm_type={cfg['norm_type']!r})"
        )
    if cfg["codebook_dim"] not in (None, cfg["hidden_size"]):
        raise MusicLMError(
            f"{path}: codebook_dim {cfg['codebook_dim']} != hidden_size {cfg['hidden_size']} is not supported"
        )
    try:
        seanet = SEANetConfig(
            channels=int(cfg["audio_channels"]),
            dimension=int(cfg["hidden_size"]),
            n_filters=int(cfg["num_filters"]),
            n_residual_layers=int(cfg["num_residual_layers"]),
            ratios=tuple(int(r) for r in cfg["upsampling_ratios"]),
            kernel_size=int(cfg["kernel_size"]),
            last_kernel_size=int(cfg["last_kernel_size"]),
            residual_kernel_size=int(cfg["residual_kernel_size"]),
            dilation_base=int(cfg["dilation_growth_rate"]),
            causal=bool(cfg["use_causal_conv"]),
            pad_mode=str(cfg["pad_mode"]),
            true_skip=not cfg["use_conv_shortcut"],
            compress=int(cfg["compress"]),
            lstm=int(cfg["num_lstm_layers"]),
            norm="weight_norm",
            trim_right_ratio=float(cfg["trim_right_ratio"]),
        )
        sample_rate, card = int(cfg["sampling_rate"]), int(cfg["codebook_size"])
        bandwidths = tuple(float(b) for b in cfg["target_bandwidths"])
    except (TypeError, ValueError) as e:
        raise MusicLMError(f"{path}/config.json: bad EnCodec config value ({e})") from None
    if sample_rate % seanet.hop_length:
        # transformers rounds the frame rate up; ours is exact, so the bandwidth -> codebooks rule would differ.
        raise MusicLMError(
            f"{path}: sampling_rate {sample_rate} is not a multiple of the hop length {seanet.hop_length}"
        )
    if not bandwidths or card < 2 or card & (card - 1):
        raise MusicLMError(
            f"{path}: need target_bandwidths and a power-of-two codebook_size, got {list(bandwidths)} and {card}"
        )
    # transformers' `num_quantizers`: as many codebooks as the largest bandwidth uses.
    n_q = int(1000 * max(bandwidths) // ((sample_rate // seanet.hop_length) * (card.bit_length() - 1)))
    if n_q < 1:
        raise MusicLMError(f"{path}: target_bandwidths {list(bandwidths)} leave no codebook")
    khz = f"{sample_rate / 1000:g}"
    return CodecConfig(
        name=f"encodec_{khz}khz",
        sample_rate=sample_rate,
        seanet=seanet,
        n_q=n_q,
        card=card,
        bandwidths=bandwidths,
        kmeans_iters=50,
    )


def _weight_files(path: Path) -> list[Path]:
    if (path / "model.safetensors").is_file():
        return [path / "model.safetensors"]
    index = path / "model.safetensors.index.json"
    if index.is_file():  # sharded: {"weight_map": {key: shard file}}
        return [path / shard for shard in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    if (path / "pytorch_model.bin").is_file():
        return [path / "pytorch_model.bin"]
    raise MusicLMError(f"{path}: no model.safetensors or pytorch_model.bin")


def _read_transformers_weights(path: Path, prefix: str = "") -> dict[str, Tensor]:
    """The tensors named `prefix`... (prefix removed); only those are read, so a MusicGen file costs its EnCodec."""
    state: dict[str, Tensor] = {}
    try:
        for file in _weight_files(path):
            if file.suffix == ".bin":
                tensors = torch.load(file, map_location="cpu", weights_only=True)
                if not isinstance(tensors, dict):
                    raise ValueError(f"expected a state dict, got {type(tensors).__name__}")
                state.update({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)})
                continue
            with safe_open(str(file), framework="pt") as f:
                state.update({k[len(prefix) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefix)})
    except MusicLMError:
        raise
    except Exception as e:  # safetensors/pickle/JSON raise many types for corrupt files
        raise MusicLMError(f"{path}: unreadable EnCodec weights ({type(e).__name__}: {e})") from None
    if not state:
        raise MusicLMError(f"{path}: no EnCodec weights{f' (nothing under {prefix!r})' if prefix else ''}")
    return state


def _transformers_to_ours(key: str, transposed: set[str]) -> str | None:
    """Rename one transformers key; None for buffers transformers may store that we recompute."""
    key = _new_style_weight_norm(key)
    key = re.sub(r"^quantizer\.layers\.(\d+)\.codebook\.", r"quantizer.layers.\1.", key)
    m = re.match(r"^(encoder|decoder)\.layers\.(\d+)\.(.*)$", key)
    if not m:
        return key
    part, index, rest = m.groups()
    if re.fullmatch(r"(.*\.)?(stride|kernel_size|padding_total)", rest):
        return None  # conv geometry buffers (older transformers); our SConv1d derives them from the config
    module = f"{part}.model.{index}"
    # EncodecConv1d holds the conv itself as `.conv`; our SConv1d wraps it twice, like `encodec` does.
    wrapped = "convtr.convtr." if module in transposed else "conv.conv."
    rest = re.sub(r"(^|\.)conv\.", lambda g: g.group(1) + ("conv.conv." if g.group(1) else wrapped), rest)
    return f"{module}.{rest}"


def _load_transformers(path: Path, meta: dict, prefix: str) -> Codec:
    config = _transformers_config(meta, path)
    raw = _read_transformers_weights(path, prefix)
    if any(".norm." in k for k in raw):
        raise MusicLMError(f"{path}: {_UNSUPPORTED_48KHZ}")
    codec = Codec(config)
    transposed = {f"decoder.model.{i}" for i, m in enumerate(codec.decoder.model) if isinstance(m, SConvTranspose1d)}
    state = {}
    for key, value in raw.items():
        ours = _transformers_to_ours(key, transposed)
        if ours is not None:
            state[ours] = value
    return _load_mapped(codec, state, path)


def load_transformers_encodec(path: Path) -> Codec:
    """Load a transformers `EncodecModel` directory (config.json with model_type "encodec") as our Codec."""
    path = Path(path)
    return _load_transformers(path, json.loads((path / "config.json").read_text()), prefix="")


def load_musicgen_audio_encoder(path: Path) -> Codec:
    """Load the EnCodec inside a transformers MusicGen directory (config.json with model_type "musicgen" or
    "musicgen_melody": the `audio_encoder` sub-config, weights named `audio_encoder.*`) as our Codec."""
    path = Path(path)
    try:
        meta = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise MusicLMError(f"{path}: unreadable config.json ({e})") from None
    sub = meta.get("audio_encoder")
    if not isinstance(sub, dict) or sub.get("model_type", "encodec") != "encodec":
        raise MusicLMError(f"{path}/config.json: no EnCodec `audio_encoder` (is this a MusicGen checkpoint?)")
    return _load_transformers(path, sub, prefix="audio_encoder.")
