"""The codec: SEANet encoder → residual VQ → SEANet decoder (EnCodec, Défossez et al. 2022).

    wav [B, C, N] --encoder--> latent [B, D, T] --RVQ--> codes [B, K, T] --decode--> wav [B, C, N]

One model serves several bitrates: training drops the trailing quantizers at random (quantizer dropout,
SoundStream §3.3), so any prefix of K codebooks decodes. `set_bandwidth(kbps)` picks K.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import Tensor, nn

from musiclm.codec.framenet import FrameDecoder, FrameEncoder, FrameNetConfig, PhaseTrack
from musiclm.codec.quantizer import ResidualVectorQuantizer
from musiclm.codec.seanet import SEANetConfig, SEANetDecoder, SEANetEncoder
from musiclm.config import from_dict, to_dict
from musiclm.errors import MusicLMError

CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
MODEL_TYPE = "musiclm-codec"


@dataclass
class CodecConfig:
    name: str = "musiclm-codec"
    sample_rate: int = 24000
    # "seanet": EnCodec's convolutional encoder/decoder (official EnCodec/MusicGen weights load into it);
    # "frame": STFT → ConvNeXt at the frame rate → iSTFT head (Vocos-style, musiclm.codec.framenet).
    backbone: str = "seanet"
    seanet: SEANetConfig = field(default_factory=SEANetConfig)
    frame: FrameNetConfig = field(default_factory=FrameNetConfig)
    n_q: int = 32  # codebooks available; a bandwidth uses a prefix of them
    card: int = 1024  # entries per codebook
    bandwidths: tuple[float, ...] = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbps
    ema_decay: float = 0.99
    kmeans_iters: int = 10
    dead_code_threshold: float = 2.0

    @property
    def backbone_config(self) -> SEANetConfig | FrameNetConfig:
        if self.backbone == "seanet":
            return self.seanet
        if self.backbone == "frame":
            return self.frame
        raise MusicLMError(f"unknown codec backbone {self.backbone!r}; use 'seanet' or 'frame'")

    @property
    def hop_length(self) -> int:
        return self.backbone_config.hop_length

    @property
    def channels(self) -> int:
        return self.backbone_config.channels

    @property
    def dimension(self) -> int:
        """Latent width D (what the quantizer codes)."""
        return self.backbone_config.dimension

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def bits_per_codebook(self) -> float:
        return math.log2(self.card)

    def n_q_for_bandwidth(self, kbps: float) -> int:
        """Codebooks that fit in `kbps` (EnCodec's rule: floor, at least one)."""
        per_q = self.frame_rate * self.bits_per_codebook
        return max(1, min(self.n_q, int(math.floor(kbps * 1000 / per_q + 1e-9))))


DIGEST_SKIPS = ("embed_avg", "cluster_size", "inited")


def _weights_stamp(module: nn.Module, keys: list[str]) -> tuple | None:
    """What identifies the weights' current values without reading them: each tensor object (held, so its id
    is not reused), its storage and its in-place version counter (bumped by optimizer steps, `load_state_dict`
    and in-place ops; not by writes through `.data`). None where a tensor keeps no version (inference-mode
    tensors) or a key is not a parameter or buffer: then nothing is cached."""
    tensors = {**dict(module.named_parameters()), **dict(module.named_buffers())}
    try:
        return tuple((k, tensors[k], tensors[k].data_ptr(), tensors[k]._version) for k in keys)
    except (KeyError, RuntimeError):
        return None


def _same_stamp(old: tuple | None, new: tuple) -> bool:
    return (
        old is not None
        and len(old) == len(new)
        and all(a[0] == b[0] and a[1] is b[1] and a[2:] == b[2:] for a, b in zip(old, new, strict=True))
    )


class Codec(nn.Module):
    def __init__(self, config: CodecConfig):
        super().__init__()
        self.config = config
        if config.backbone_config is config.seanet:
            self.encoder, self.decoder = SEANetEncoder(config.seanet), SEANetDecoder(config.seanet)
        else:
            self.encoder, self.decoder = FrameEncoder(config.frame), FrameDecoder(config.frame, config.sample_rate)
        self.quantizer = ResidualVectorQuantizer(
            config.dimension,
            config.n_q,
            config.card,
            config.ema_decay,
            config.kmeans_iters,
            config.dead_code_threshold,
        )
        self.bandwidth = max(config.bandwidths)

    # ---- properties users ask for -------------------------------------------------------------------
    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    @property
    def channels(self) -> int:
        return self.config.channels

    @property
    def frame_rate(self) -> float:
        return self.config.frame_rate

    @property
    def hop_length(self) -> int:
        return self.config.hop_length

    @property
    def card(self) -> int:
        return self.config.card

    @property
    def bandwidths(self) -> tuple[float, ...]:
        return self.config.bandwidths

    @property
    def n_q(self) -> int:
        """Codebooks used at the current bandwidth."""
        return self.config.n_q_for_bandwidth(self.bandwidth)

    def set_bandwidth(self, kbps: float) -> None:
        if kbps not in self.config.bandwidths:
            raise MusicLMError(f"bandwidth {kbps} kbps not supported; choose one of {list(self.bandwidths)}")
        self.bandwidth = kbps

    def num_frames(self, num_samples: int) -> int:
        return math.ceil(num_samples / self.hop_length)

    # ---- the data flow -------------------------------------------------------------------------------
    def _check_wav(self, wav: Tensor) -> None:
        if wav.dim() != 3 or wav.shape[1] != self.channels:
            raise MusicLMError(f"expected audio shaped [B, {self.channels}, N], got {list(wav.shape)}")
        if wav.shape[-1] == 0:
            raise MusicLMError("empty audio: need at least one sample")

    def _encode_latent(self, wav: Tensor, frame_offset: int) -> Tensor:
        if isinstance(self.encoder, FrameEncoder):
            return self.encoder(wav, frame_offset)
        return self.encoder(wav)  # SEANet: a convolution stack, the same at every offset

    def _decode_latent(self, latent: Tensor, frame_offset: int, phase_track: PhaseTrack | None = None) -> Tensor:
        if isinstance(self.decoder, FrameDecoder):
            return self.decoder(latent, frame_offset, phase_track)
        return self.decoder(latent)

    def new_phase_track(self) -> PhaseTrack | None:
        """State that a chunked decode passes to every `decode` call, in order, when the decoder carries
        state across chunks (a frame codec with `vocoder_phase_hz`); None when it does not."""
        return self.decoder.new_phase_track() if isinstance(self.decoder, FrameDecoder) else None

    @torch.no_grad()
    def encode(self, wav: Tensor, n_q: int | None = None, frame_offset: int = 0) -> Tensor:
        """wav [B, C, N] float in [-1, 1] → codes [B, K, T] int64, T = ceil(N / hop_length).
        `frame_offset`: the absolute frame index of wav's first sample when it is a chunk of a longer signal
        that starts on a frame boundary (a heterodyned frame codec's phase depends on it)."""
        self._check_wav(wav)
        return self.quantizer.encode(self._encode_latent(wav, frame_offset), n_q or self.n_q)

    @torch.no_grad()
    def decode(
        self, codes: Tensor, length: int | None = None, frame_offset: int = 0, phase_track: PhaseTrack | None = None
    ) -> Tensor:
        """codes [B, K, T] → wav [B, C, T * hop_length], trimmed to `length` samples when given.
        `frame_offset`: the absolute index of the first frame when `codes` are a slice of a longer stream;
        `phase_track` (from `new_phase_track`, when not None): carried from chunk to chunk of such a stream."""
        if codes.dim() != 3:
            raise MusicLMError(f"expected codes shaped [B, K, T], got {list(codes.shape)}")
        if codes.numel() and (int(codes.min()) < 0 or int(codes.max()) >= self.card):
            raise MusicLMError(f"codes out of range [0, {self.card})")
        wav = self._decode_latent(self.quantizer.decode(codes.long()), frame_offset, phase_track)
        return wav if length is None else wav[..., :length]

    @torch.no_grad()
    def decode_latent(
        self, latent: Tensor, length: int | None = None, frame_offset: int = 0, phase_track: PhaseTrack | None = None
    ) -> Tensor:
        """latent [B, D, T] (the quantizer's output space, e.g. a mean of code embeddings) → wav, as `decode`."""
        if latent.dim() != 3 or latent.shape[1] != self.quantizer.dim:
            raise MusicLMError(f"expected a latent shaped [B, {self.quantizer.dim}, T], got {list(latent.shape)}")
        wav = self._decode_latent(latent, frame_offset, phase_track)
        return wav if length is None else wav[..., :length]

    def forward(self, wav: Tensor, n_q: int | None = None):
        """Training/analysis pass: returns (reconstruction [B, C, N], QuantizerOutput)."""
        self._check_wav(wav)
        q = self.quantizer(self.encoder(wav), n_q or self.n_q)
        return self.decoder(q.quantized)[..., : wav.shape[-1]], q

    # ---- checkpoints ----------------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 over the weights that define the codes, the encoder's and the codebooks (16 hex chars): it
        names the token space in .mlc files and token shards. The decoder is left out on purpose, so a
        decoder trained further (`freeze_encoder`) still decodes old files and serves LMs trained on old
        shards; any change to the encoder or the codebooks changes the fingerprint."""
        return self._digest(("encoder.", "quantizer."))

    def sound_fingerprint(self) -> str:
        """sha256 over the decoder's weights and the codebooks (16 hex chars): what each code sounds like. Codes
        or latents chosen by listening through this decoder (`codec.search`) stay valid targets for an
        encoder trained against it (`freeze_decoder`) while the encoder, and so `fingerprint`, changes."""
        return self._digest(("decoder.", "quantizer."))

    def _digest(self, prefixes: tuple[str, ...]) -> str:
        state = self.state_dict()
        # EMA training statistics do not change what encode computes
        keys = [k for k in sorted(state) if k.startswith(prefixes) and not k.endswith(DIGEST_SKIPS)]
        stamp = _weights_stamp(self, keys)
        cache = self.__dict__.setdefault("_digests", {})
        if stamp is not None and _same_stamp(cache.get(prefixes, (None,))[0], stamp):
            return cache[prefixes][1]  # the compressor asks once per file; hashing takes ~30 ms a call
        digest = hashlib.sha256()
        for key in keys:
            digest.update(key.encode())
            digest.update(state[key].detach().to(torch.float32).cpu().contiguous().numpy().data)  # no copy
        cache[prefixes] = (stamp, digest.hexdigest()[:16])
        return cache[prefixes][1]

    def save_pretrained(self, directory: str | Path, dtype: torch.dtype = torch.float32) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"model_type": MODEL_TYPE, **to_dict(self.config)}
        (directory / CONFIG_NAME).write_text(json.dumps(meta, indent=2) + "\n")
        # embed_avg is not saved: it equals embed x cluster_size (the EMA's own invariant, up to smoothing),
        # so it is rebuilt on load and the file is half the size.
        state = {
            k: (v.to(dtype) if v.is_floating_point() else v).detach().cpu().contiguous()
            for k, v in self.state_dict().items()
            if not k.endswith("embed_avg")
        }
        from musiclm.nn.checkpoint import save_weights  # safetensors alone would leave the file 0600

        save_weights(state, directory / WEIGHTS_NAME, metadata={"model_type": MODEL_TYPE})
        return directory

    @classmethod
    def from_pretrained(cls, path: str | Path | None = None, map_location: str = "cpu") -> Codec:
        """Load a codec: None → the shipped default; a directory saved by `save_pretrained`; a transformers
        `EncodecModel` directory; or an original `encodec` package `.th` checkpoint."""
        from musiclm.codec import interop
        from musiclm.paths import default_codec_dir

        path = Path(path) if path is not None else default_codec_dir()
        if not path.exists():
            raise MusicLMError(f"codec checkpoint not found: {path}")
        if path.is_file():
            return interop.load_encodec_th(path)
        from musiclm.nn.checkpoint import read_config_json

        config_path = path / CONFIG_NAME
        meta = read_config_json(path, "codec")
        if meta.get("model_type") == "encodec":
            return interop.load_transformers_encodec(path)
        if meta.get("model_type") in ("musicgen", "musicgen_melody"):
            return interop.load_musicgen_audio_encoder(path)
        if meta.pop("model_type", None) != MODEL_TYPE:
            raise MusicLMError(f"{config_path}: not a musiclm codec or EnCodec config")
        config = from_dict(CodecConfig, meta)
        weights = path / WEIGHTS_NAME
        _check_weights_header(config, weights)  # before anything is allocated: the directory may be hostile
        model = cls(config)
        try:
            state = load_file(str(weights), device=map_location)
        except Exception as e:  # safetensors raises several types for corrupt files
            raise MusicLMError(f"{weights}: unreadable weights ({e})") from None
        state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
        for i in range(model.config.n_q):
            prefix = f"quantizer.layers.{i}."
            if prefix + "embed_avg" not in state and prefix + "embed" in state:
                state[prefix + "embed_avg"] = state[prefix + "embed"] * state[prefix + "cluster_size"][:, None]
        try:
            model.load_state_dict(state)
        except RuntimeError as e:
            raise MusicLMError(f"{weights}: weights do not match config.json ({str(e).splitlines()[0]})") from None
        return model.eval()


def _check_weights_header(config: CodecConfig, weights: Path) -> None:
    """config.json against the shapes in model.safetensors' header, before building (`musiclm.nn.checkpoint`);
    embed_avg is not saved (rebuilt on load)."""
    from musiclm.nn.checkpoint import check_counts, check_shapes, read_shapes

    shapes = read_shapes(weights)
    counts = [("n_q", config.n_q, "quantizer.layers.")]
    if config.backbone == "seanet":  # per ratio: its residual blocks and a strided conv, each with weights
        seanet = config.seanet
        counts.append(("seanet.ratios", len(seanet.ratios) * (seanet.n_residual_layers + 1), "encoder.model."))
    elif config.backbone == "frame":
        counts += [
            ("frame.encoder_layers", config.frame.encoder_layers, "encoder.net.blocks."),
            ("frame.decoder_layers", config.frame.decoder_layers, "decoder.net.blocks."),
        ]
    check_counts(shapes, weights, counts)
    check_shapes(lambda: Codec(config), shapes, weights, derived=("embed_avg",))
