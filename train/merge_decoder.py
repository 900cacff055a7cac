"""Put a decoder trained elsewhere (train/gpu_decoder_phase.sh writes decoder-only fp16 safetensors) into a
codec directory: the encoder and codebooks, and so the fingerprint and every LM trained on its tokens, stay.
Or an encoder (`--encoder`, train/gpu_encoder_phase.sh): the decoder and codebooks stay, the codes change.

    python train/merge_decoder.py --codec checkpoints/codec --decoder gan_final.safetensors \\
        --out train/candidates/codec-gan --name musiclm-codec-frame-A3-gan [--set frame.vocoder_phase_hz=0]

--set changes a decoder-side codec setting that the decoder was trained with (codec_module.RETUNABLE_FIELDS,
e.g. the vocoder-phase frequency); anything else would change what the weights mean and is refused.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file

from musiclm.codec import Codec, CodecConfig
from musiclm.config import from_dict, to_dict
from musiclm.errors import MusicLMError
from musiclm.training.codec_module import RETUNABLE_FIELDS


def merge(codec_dir: str, decoder_file: str, out: str, name: str | None, settings: list[str]) -> Codec:
    codec = Codec.from_pretrained(codec_dir)
    before = codec.fingerprint()
    config = to_dict(codec.config)
    for item in settings:
        key, _, value = item.partition("=")
        path = tuple(key.split("."))
        if path not in RETUNABLE_FIELDS:
            raise MusicLMError(f"--set {key}: only {['.'.join(p) for p in RETUNABLE_FIELDS]} may change")
        section = config
        for part in path[:-1]:
            section = section[part]
        section[path[-1]] = yaml.safe_load(value)
    if name:
        config["name"] = name
    decoder = _load_part(decoder_file, "decoder")
    one_stack = config.get("backbone") == "frame" and "decoder.net2.embed.weight" not in decoder
    if one_stack:  # a decoder grown in training (more blocks, a head MLP) keeps its shape
        config["frame"].update(_frame_decoder_shape(decoder))
    merged = Codec(from_dict(CodecConfig, config))
    state = merged.state_dict()
    state.update({k: v for k, v in codec.state_dict().items() if not k.startswith("decoder.")})
    missing = sorted(k for k in state if k.startswith("decoder.") and k not in decoder)
    if missing:
        raise MusicLMError(f"{decoder_file}: lacks {missing[:3]}{'...' if len(missing) > 3 else ''}")
    state.update({k: v.to(state[k].dtype) for k, v in decoder.items()})
    merged.load_state_dict(state)
    if merged.fingerprint() != before:
        raise MusicLMError("the merged codec's fingerprint changed: the decoder file touched the encoder")
    merged.save_pretrained(out, dtype=_stored_dtype(Path(codec_dir) / "model.safetensors"))
    if Codec.from_pretrained(out).fingerprint() != before:  # e.g. an fp32 codec written as fp16
        raise MusicLMError(f"{out}: the saved codec's fingerprint differs from {codec_dir}'s")
    _write_provenance(out, codec_dir, "decoder", decoder_file, set=settings)
    return merged


def merge_encoder(codec_dir: str, encoder_file: str, out: str, name: str | None) -> Codec:
    """The other half: an encoder trained elsewhere against this codec's frozen decoder and codebooks
    (train/gpu_encoder_phase.sh). What each code sounds like (`sound_fingerprint`) stays; the token space
    (`fingerprint`) changes, so an LM must be trained on the new codes before this codec ships."""
    codec = Codec.from_pretrained(codec_dir)
    sound = codec.sound_fingerprint()
    encoder = _load_part(encoder_file, "encoder")
    state = codec.state_dict()
    missing = sorted(k for k in state if k.startswith("encoder.") and k not in encoder)
    wrong = sorted(k for k, v in encoder.items() if k not in state or state[k].shape != v.shape)
    if missing or wrong:
        raise MusicLMError(
            f"{encoder_file}: not this codec's encoder (missing {missing[:3]}, unknown or reshaped {wrong[:3]})"
        )
    state.update({k: v.to(state[k].dtype) for k, v in encoder.items()})
    codec.load_state_dict(state)
    if name:
        codec.config.name = name
    codec.save_pretrained(out, dtype=_stored_dtype(Path(codec_dir) / "model.safetensors"))
    if Codec.from_pretrained(out).sound_fingerprint() != sound:
        raise MusicLMError(f"{out}: the decoder or codebooks changed on the way")
    _write_provenance(out, codec_dir, "encoder", encoder_file)
    return codec


def _load_part(weights_file: str, part: str) -> dict[str, torch.Tensor]:
    """`part`.* weights (safetensors), refusing a file with anything else in it."""
    weights = load_file(weights_file)
    if not weights or any(not k.startswith(f"{part}.") for k in weights):
        raise MusicLMError(f"{weights_file}: expected {part}.* weights only")
    return weights


def _write_provenance(out: str, codec_dir: str, part: str, weights_file: str, **extra) -> None:
    """OUT/merged_from.json: the codec, the merged part's file and the training step recorded in it."""
    with safe_open(weights_file, "pt") as f:
        step = (f.metadata() or {}).get("step")
    record = {"codec": codec_dir, part: str(weights_file), "step": step, **extra}
    (Path(out) / "merged_from.json").write_text(json.dumps(record, indent=2) + "\n")


def _frame_decoder_shape(decoder: dict[str, torch.Tensor]) -> dict[str, int]:
    """The frame decoder's block count and head-MLP width, read off its weights (one stack, no upsampling:
    the shape `FrameDecoder.deepen_state` and `head_hidden` grow)."""
    blocks = {int(k.split(".")[3]) for k in decoder if k.startswith("decoder.net.blocks.")}
    mlp = decoder.get("decoder.net.proj_mlp.0.weight")
    return {"decoder_layers": len(blocks), "head_hidden": 0 if mlp is None else int(mlp.shape[0])}


def _stored_dtype(weights: Path) -> torch.dtype:
    """The floating dtype a codec's weights were saved in (the shipped ones are fp16), so a merge rounds
    nothing that defines the codes."""
    with safe_open(str(weights), "pt") as f:
        for key in f.keys():
            tensor = f.get_slice(key)
            if tensor.get_dtype() in ("F16", "BF16", "F32"):
                return {"F16": torch.float16, "BF16": torch.bfloat16, "F32": torch.float32}[tensor.get_dtype()]
    return torch.float32


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--codec", required=True, help="codec directory whose encoder and codebooks stay")
    part = parser.add_mutually_exclusive_group(required=True)
    part.add_argument("--decoder", help="decoder.* weights (safetensors)")
    part.add_argument("--encoder", help="encoder.* weights (safetensors): the codes change, the sounds stay")
    parser.add_argument("--out", required=True)
    parser.add_argument("--name", help="the merged codec's config name")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    try:
        if args.encoder and args.set:
            raise MusicLMError("--set applies to a decoder merge only")
        if args.encoder:
            merged = merge_encoder(args.codec, args.encoder, args.out, args.name)
        else:
            merged = merge(args.codec, args.decoder, args.out, args.name, args.set)
    except MusicLMError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if args.encoder:
        print(f"{args.out}: fingerprint {merged.fingerprint()} (new codes, same sounds: train the LM on them)")
    else:
        print(f"{args.out}: fingerprint {merged.fingerprint()} (unchanged)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
