"""Loading a transformers MusicGen directory (`MusicgenForConditionalGeneration`) as a `MusicLM`.

Our decoder block is MusicGen's, so the weights map key by key; the only changes are fusions made for
speed: q/k/v of self-attention into one matrix, k/v of cross-attention into one, the K embedding tables
into one, the K heads into one. The T5 text encoder becomes a frozen `t5` text encoder with
`enc_to_dec_proj` as `text_proj`; the 32 kHz EnCodec goes through `musiclm.codec.Codec.from_pretrained`.
Stereo MusicGen (interleaved codebooks) is not supported.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from musiclm.errors import MusicLMError
from musiclm.text.encoder import TextConfig

ACTIVATIONS = {"gelu": "gelu", "relu": "relu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh"}
TOKENIZER_FILES = ("spiece.model", "tokenizer.model")


def read_musicgen_state(path: Path) -> dict[str, Tensor]:
    try:
        if (path / "model.safetensors").is_file():
            return load_file(str(path / "model.safetensors"))
        index = path / "model.safetensors.index.json"
        if index.is_file():  # sharded: {"weight_map": {key: shard file}}
            state: dict[str, Tensor] = {}
            for shard in sorted(set(json.loads(index.read_text())["weight_map"].values())):
                state.update(load_file(str(path / shard)))
            return state
    except Exception as e:  # safetensors/JSON raise many types for corrupt files
        raise MusicLMError(f"{path}: unreadable MusicGen weights ({type(e).__name__}: {e})") from None
    raise MusicLMError(f"{path}: no model.safetensors (MusicGen weights must be in safetensors format)")


def musicgen_config(meta: dict, generation: dict, path: Path):
    from musiclm.lm.model import LMConfig

    dec, t5, audio = meta.get("decoder"), meta.get("text_encoder"), meta.get("audio_encoder")
    if not (isinstance(dec, dict) and isinstance(t5, dict) and isinstance(audio, dict)):
        raise MusicLMError(f"{path}/config.json: a MusicGen config needs decoder, text_encoder, audio_encoder")
    if dec.get("audio_channels", 1) != 1:
        raise MusicLMError(f"{path}: stereo MusicGen is not supported")
    if dec.get("cross_attention_hidden_size") not in (None, dec["hidden_size"]):
        raise MusicLMError(f"{path}: cross_attention_hidden_size != hidden_size is not supported")
    act = dec.get("activation_function", "gelu")
    if act not in ACTIVATIONS:
        raise MusicLMError(f"{path}: decoder activation {act!r} is not supported")
    if t5.get("model_type") != "t5":
        raise MusicLMError(f"{path}: only a T5 text encoder is supported, got {t5.get('model_type')!r}")
    K, card = int(dec["num_codebooks"]), int(dec["vocab_size"])
    if dec.get("pad_token_id", card) != card:
        raise MusicLMError(f"{path}: expected the special token at id {card}")
    hop = 1
    for r in audio.get("upsampling_ratios", [8, 5, 4, 4]):
        hop *= int(r)
    sample_rate = int(audio.get("sampling_rate", 32000))
    text = TextConfig(
        kind="t5",
        vocab_size=int(t5["vocab_size"]),
        dim=int(t5["d_model"]),
        n_layers=int(t5["num_layers"]),
        n_heads=int(t5["num_heads"]),
        ffn_dim=int(t5["d_ff"]),
        max_len=64,
        add_eos=True,
        t5_config=t5,
    )
    max_length = int(generation.get("max_length") or 1500)  # steps incl. BOS; MusicGen trained on 30 s
    return LMConfig(
        name=f"musicgen:{path.name}",
        n_q=K,
        card=card,
        dim=int(dec["hidden_size"]),
        n_layers=int(dec["num_hidden_layers"]),
        n_heads=int(dec["num_attention_heads"]),
        ffn_dim=int(dec["ffn_dim"]),
        activation=ACTIVATIONS[act],
        dropout=0.0,
        condition_dropout=0.0,
        max_frames=max(1, min(max_length, int(dec.get("max_position_embeddings", 2048))) - K),
        frame_rate=sample_rate / hop,
        sample_rate=sample_rate,
        codec=None,
        text=text,
        temperature=float(generation.get("temperature") or 1.0),
        top_k=int(generation.get("top_k") or 250),
        top_p=float(generation.get("top_p") or 0.0),
        cfg=float(generation.get("guidance_scale") or 3.0),
    )


def convert_state(state: dict[str, Tensor], K: int, n_layers: int, embed_scale: float = 1.0) -> dict[str, Tensor]:
    """transformers MusicGen keys → ours (decoder, heads, projection, T5); EnCodec keys are left out."""
    d, out = "decoder.model.decoder.", {}
    try:
        out["embed.weight"] = torch.cat([state[f"{d}embed_tokens.{k}.weight"] for k in range(K)]) * embed_scale
        out["heads.weight"] = torch.cat([state[f"decoder.lm_heads.{k}.weight"] for k in range(K)])
        out["norm.weight"], out["norm.bias"] = state[f"{d}layer_norm.weight"], state[f"{d}layer_norm.bias"]
        for i in range(n_layers):
            src, dst = f"{d}layers.{i}.", f"blocks.{i}."
            for ours, theirs in (
                ("norm_self", "self_attn_layer_norm"),
                ("norm_cross", "encoder_attn_layer_norm"),
                ("norm_ffn", "final_layer_norm"),
            ):
                out[f"{dst}{ours}.weight"] = state[f"{src}{theirs}.weight"]
                out[f"{dst}{ours}.bias"] = state[f"{src}{theirs}.bias"]
            out[f"{dst}self_attn.qkv.weight"] = torch.cat([state[f"{src}self_attn.{p}_proj.weight"] for p in "qkv"])
            out[f"{dst}self_attn.out.weight"] = state[f"{src}self_attn.out_proj.weight"]
            out[f"{dst}cross_attn.q.weight"] = state[f"{src}encoder_attn.q_proj.weight"]
            out[f"{dst}cross_attn.kv.weight"] = torch.cat([state[f"{src}encoder_attn.{p}_proj.weight"] for p in "kv"])
            out[f"{dst}cross_attn.out.weight"] = state[f"{src}encoder_attn.out_proj.weight"]
            out[f"{dst}fc1.weight"] = state[f"{src}fc1.weight"]
            out[f"{dst}fc2.weight"] = state[f"{src}fc2.weight"]
    except KeyError as e:
        raise MusicLMError(f"MusicGen weights lack {e.args[0]}") from None
    if "enc_to_dec_proj.weight" in state:
        out["text_proj.weight"], out["text_proj.bias"] = state["enc_to_dec_proj.weight"], state["enc_to_dec_proj.bias"]
    t5 = {k[len("text_encoder.") :]: v for k, v in state.items() if k.startswith("text_encoder.")}
    # T5 ties its input embedding to `shared`; a saved file may hold only one of the two names
    for a, b in (("shared.weight", "encoder.embed_tokens.weight"), ("encoder.embed_tokens.weight", "shared.weight")):
        if a in t5 and b not in t5:
            t5[b] = t5[a]
    out.update({f"text_encoder.t5.{k}": v for k, v in t5.items()})
    return out


def load_musicgen_codec(path: Path, meta: dict, state: dict[str, Tensor]):
    """The audio_encoder part of a MusicGen directory through our EnCodec interop (public API only)."""
    from musiclm.codec import Codec

    audio = {k[len("audio_encoder.") :]: v.contiguous() for k, v in state.items() if k.startswith("audio_encoder.")}
    if not audio:
        raise MusicLMError(f"{path}: no audio_encoder weights")
    with tempfile.TemporaryDirectory(prefix="musicgen-encodec-") as tmp:
        (Path(tmp) / "config.json").write_text(json.dumps({**meta["audio_encoder"], "model_type": "encodec"}))
        save_file(audio, str(Path(tmp) / "model.safetensors"))
        return Codec.from_pretrained(tmp)


def load_musicgen(path: Path, map_location: str = "cpu", load_codec: bool = True):
    from musiclm.lm.model import MusicLM
    from musiclm.lm.pretrained import load_weights
    from musiclm.text.tokenizer import TextTokenizer

    meta = json.loads((path / "config.json").read_text())
    gen_path = path / "generation_config.json"
    generation = json.loads(gen_path.read_text()) if gen_path.is_file() else {}
    config = musicgen_config(meta, generation, path)
    tokenizer_file = next((path / f for f in TOKENIZER_FILES if (path / f).is_file()), None)
    if tokenizer_file is None:
        raise MusicLMError(f"{path}: no T5 SentencePiece tokenizer ({' or '.join(TOKENIZER_FILES)})")
    tokenizer = TextTokenizer(tokenizer_file, add_eos=True)
    state = read_musicgen_state(path)
    dec = meta["decoder"]
    embed_scale = float(dec["hidden_size"]) ** 0.5 if dec.get("scale_embedding") else 1.0
    model = MusicLM(config, tokenizer=tokenizer)
    load_weights(model, convert_state(state, config.n_q, config.n_layers, embed_scale), path)
    if load_codec:
        codec = load_musicgen_codec(path, meta, state)
        if codec.card != config.card:
            raise MusicLMError(f"{path}: EnCodec has {codec.card} entries per codebook, decoder {config.card}")
        object.__setattr__(model, "codec", codec.eval())
        model.codec_fingerprint = codec.fingerprint()
    return model.to(map_location).eval()


def save_random_musicgen(
    directory: Path,
    tokenizer_model: Path,
    *,
    dim: int,
    n_layers: int,
    n_heads: int,
    ffn_dim: int,
    n_q: int,
    card: int,
    text_dim: int = 64,
    max_positions: int = 2048,
):
    """A randomly initialised transformers MusicGen (small T5 + 32 kHz EnCodec, the decoder as given), saved
    to `directory` with the SentencePiece model as its `spiece.model`; returns the transformers model.

    Built offline from configs, so interop tests and the speed benchmark compare against the real
    implementation without downloading weights."""
    import shutil

    import sentencepiece as spm
    from transformers import (
        EncodecConfig,
        MusicgenConfig,
        MusicgenDecoderConfig,
        MusicgenForConditionalGeneration,
        T5Config,
    )

    vocab = spm.SentencePieceProcessor(model_file=str(tokenizer_model)).get_piece_size()
    t5 = T5Config(vocab_size=vocab, d_model=text_dim, d_kv=text_dim // 4, d_ff=2 * text_dim, num_layers=2, num_heads=4)
    audio = EncodecConfig(
        sampling_rate=32000,
        target_bandwidths=[2.2],
        upsampling_ratios=[8, 5, 4, 4],
        num_filters=4,
        hidden_size=16,
        codebook_size=card,
        num_lstm_layers=1,
    )
    decoder = MusicgenDecoderConfig(
        vocab_size=card,
        hidden_size=dim,
        num_hidden_layers=n_layers,
        num_attention_heads=n_heads,
        ffn_dim=ffn_dim,
        num_codebooks=n_q,
        max_position_embeddings=max_positions,
        pad_token_id=card,
        bos_token_id=card,
        decoder_start_token_id=card,
    )
    config = MusicgenConfig(text_encoder=t5.to_dict(), audio_encoder=audio.to_dict(), decoder=decoder.to_dict())
    model = MusicgenForConditionalGeneration(config).eval()
    model.save_pretrained(directory)
    shutil.copyfile(tokenizer_model, Path(directory) / "spiece.model")
    return model
