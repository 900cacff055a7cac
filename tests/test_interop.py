"""EnCodec weights load into our Codec and compute what transformers' EncodecModel computes.

Small randomly initialised transformers models (built offline) are saved with `save_pretrained`, loaded with
`Codec.from_pretrained`, and must give identical codes and decoded audio within 1e-4 at every bandwidth.
The original `encodec` package's .th layout is checked against that package in test_reference_encodec.py.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from musiclm.codec import Codec, CodecConfig, SEANetConfig
from musiclm.codec.interop import load_encodec_th, load_musicgen_audio_encoder
from musiclm.errors import MusicLMError

transformers = pytest.importorskip("transformers")

# Widths shrunk so each test runs in about a second; everything else as in the real models.
SMALL = dict(num_filters=4, hidden_size=16)
CONFIGS = {
    # facebook/encodec_24khz: causal, conv shortcut, 2 LSTM layers, 75 Hz, 1024-entry codebooks
    "24khz": dict(
        SMALL,
        sampling_rate=24000,
        upsampling_ratios=[8, 5, 4, 2],
        use_causal_conv=True,
        use_conv_shortcut=True,
        num_lstm_layers=2,
        codebook_size=1024,
        target_bandwidths=[1.5, 3.0, 6.0],
    ),
    # the EnCodec inside MusicGen checkpoints: 32 kHz, non-causal, identity skip, 4 codebooks of 2048 at 50 Hz
    "32khz-musicgen": dict(
        SMALL,
        sampling_rate=32000,
        upsampling_ratios=[8, 5, 4, 4],
        use_causal_conv=False,
        use_conv_shortcut=False,
        num_lstm_layers=2,
        codebook_size=2048,
        target_bandwidths=[2.2],
    ),
    # every other architecture field off its default: stereo, odd strides, partial right trim, 2 res layers
    "exotic": dict(
        num_filters=6,
        hidden_size=8,
        sampling_rate=12000,
        audio_channels=2,
        upsampling_ratios=[4, 3],
        use_causal_conv=True,
        trim_right_ratio=0.5,
        num_residual_layers=2,
        dilation_growth_rate=3,
        compress=3,
        kernel_size=5,
        last_kernel_size=3,
        residual_kernel_size=5,
        pad_mode="constant",
        use_conv_shortcut=True,
        num_lstm_layers=1,
        codebook_size=16,
        target_bandwidths=[4.0, 8.0],
    ),
}
LENGTHS = (1, 333, 1999)  # odd lengths: padding, reflect on short input and final trimming all matter


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """The test machines share 2 cores: extra intra-op threads only spin (10x slower measured here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@torch.no_grad()
def _fill_codebooks(model, channels: int) -> None:
    """Random init leaves codebooks at zero (every code 0). Draw each codebook from a Gaussian fitted to the
    residual it quantizes: distinct entries (no exact ties), and the residual shrinks layer by layer."""
    gen = torch.Generator().manual_seed(1)
    wav = 0.1 * torch.randn(4, channels, 8000, generator=gen)
    residual = model.encoder(wav).transpose(1, 2).reshape(-1, model.config.hidden_size)  # [M, D]
    for layer in model.quantizer.layers:
        book = layer.codebook
        noise = torch.randn(book.embed.shape, generator=gen)
        book.embed.copy_(residual.mean(0) + residual.std(0) * noise)
        book.embed_avg.copy_(book.embed)
        book.cluster_size.fill_(1.0)
        residual = residual - book.decode(book.encode(residual[None])[0])


def _save_transformers(tmp_path, name: str):
    torch.manual_seed(0)
    cfg = transformers.EncodecConfig(**CONFIGS[name])
    model = transformers.EncodecModel(cfg).eval()
    _fill_codebooks(model, cfg.audio_channels)
    directory = tmp_path / name
    model.save_pretrained(directory)
    return model, directory


@pytest.mark.parametrize("name", list(CONFIGS))
def test_transformers_encodec_matches(tmp_path, name):
    ref, directory = _save_transformers(tmp_path, name)
    codec = Codec.from_pretrained(directory)
    assert not codec.training
    cfg = ref.config
    assert codec.sample_rate == cfg.sampling_rate and codec.frame_rate == cfg.frame_rate
    assert codec.config.n_q == len(ref.quantizer.layers) and codec.card == cfg.codebook_size
    assert codec.bandwidths == tuple(cfg.target_bandwidths)
    gen = torch.Generator().manual_seed(2)
    for length in LENGTHS:
        wav = 0.1 * torch.randn(2, cfg.audio_channels, length, generator=gen)
        for bandwidth in cfg.target_bandwidths:
            codec.set_bandwidth(bandwidth)
            codes = codec.encode(wav)  # [B, K, T]
            with torch.no_grad():
                out = ref.encode(wav, bandwidth=bandwidth)
                ref_audio = ref.decode(out.audio_codes, out.audio_scales).audio_values
            ref_codes = out.audio_codes[0]  # [chunks, B, K, T] with a single chunk
            assert codes.shape == ref_codes.shape
            assert torch.equal(codes, ref_codes), f"codes differ at {bandwidth} kbps, {length} samples"
            assert codes.shape[1] == ref.quantizer.get_num_quantizers_for_bandwidth(bandwidth)
            audio = codec.decode(codes)
            assert audio.shape == ref_audio.shape
            assert (audio - ref_audio).abs().max() < 1e-4
            assert codec.decode(codes, length=length).shape[-1] == length


def test_legacy_weight_norm_keys_load_the_same(tmp_path):
    """Older transformers (and the Hub's facebook/encodec_* files) store weight_g/weight_v."""
    _, directory = _save_transformers(tmp_path, "24khz")
    new_style = Codec.from_pretrained(directory)
    state = load_file(directory / "model.safetensors")
    assert any(k.endswith("parametrizations.weight.original0") for k in state)
    renamed = {
        k.replace("parametrizations.weight.original0", "weight_g").replace(
            "parametrizations.weight.original1", "weight_v"
        ): v
        for k, v in state.items()
    }
    save_file(renamed, directory / "model.safetensors")
    old_style = Codec.from_pretrained(directory)
    assert old_style.fingerprint() == new_style.fingerprint()
    # the same weights as a pickled pytorch_model.bin (loaded with weights_only=True)
    (directory / "model.safetensors").unlink()
    torch.save(renamed, directory / "pytorch_model.bin")
    assert Codec.from_pretrained(directory).fingerprint() == new_style.fingerprint()


def test_musicgen_directory_audio_encoder(tmp_path):
    """A MusicGen checkpoint keeps its EnCodec under `audio_encoder` beside the text encoder and the LM."""
    ref, directory = _save_transformers(tmp_path, "32khz-musicgen")
    musicgen = tmp_path / "musicgen"
    musicgen.mkdir()
    meta = {
        "model_type": "musicgen",
        "audio_encoder": ref.config.to_dict(),
        "decoder": {"model_type": "musicgen_decoder"},
    }
    (musicgen / "config.json").write_text(json.dumps(meta))
    state = {f"audio_encoder.{k}": v for k, v in load_file(directory / "model.safetensors").items()}
    state["decoder.model.decoder.embed_positions.weights"] = torch.zeros(4, 4)
    save_file(state, musicgen / "model.safetensors")
    codec = load_musicgen_audio_encoder(musicgen)
    assert codec.fingerprint() == Codec.from_pretrained(directory).fingerprint()
    assert (codec.sample_rate, codec.config.n_q, codec.card) == (32000, 4, 2048)
    with pytest.raises(MusicLMError, match="no EnCodec `audio_encoder`"):
        load_musicgen_audio_encoder(directory)


def _rewrite(directory, edit) -> None:
    state = load_file(directory / "model.safetensors")
    edit(state)
    save_file(state, directory / "model.safetensors")


def test_mismatched_directories_raise(tmp_path):
    _, directory = _save_transformers(tmp_path, "24khz")
    config_path = directory / "config.json"
    original = config_path.read_text()

    # A config that does not describe the weights: every conv has the wrong width.
    config_path.write_text(json.dumps({**json.loads(original), "num_filters": 8}))
    with pytest.raises(MusicLMError, match="has shape"):
        Codec.from_pretrained(directory)
    config_path.write_text(original)

    # Fewer codebooks in the config than in the weights: the extra ones are named.
    config_path.write_text(json.dumps({**json.loads(original), "target_bandwidths": [1.5, 3.0]}))
    with pytest.raises(MusicLMError, match=r"unexpected quantizer\.layers\.4\."):
        Codec.from_pretrained(directory)
    config_path.write_text(original)

    # The 48 kHz model's features are refused, not half-loaded.
    config_path.write_text(json.dumps({**json.loads(original), "normalize": True, "chunk_length_s": 1.0}))
    with pytest.raises(MusicLMError, match="48 kHz"):
        Codec.from_pretrained(directory)
    config_path.write_text(original)

    bias = load_file(directory / "model.safetensors")["decoder.layers.0.conv.bias"]
    _rewrite(directory, lambda s: s.pop("decoder.layers.0.conv.bias"))
    with pytest.raises(MusicLMError, match=r"missing decoder\.model\.0\.conv\.conv\.bias"):
        Codec.from_pretrained(directory)
    _rewrite(directory, lambda s: s.update({"decoder.layers.0.conv.bias": bias, "extra.w": torch.zeros(1)}))
    with pytest.raises(MusicLMError, match="unexpected extra.w"):
        Codec.from_pretrained(directory)

    (directory / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(MusicLMError, match="unreadable"):
        Codec.from_pretrained(directory)
    (directory / "model.safetensors").unlink()
    with pytest.raises(MusicLMError, match="no model.safetensors"):
        Codec.from_pretrained(directory)


# ---- the original `encodec` .th layout, without the encodec package ------------------------------------------
def _as_encodec_th(codec: Codec, legacy_weight_norm: bool = True) -> dict[str, torch.Tensor]:
    """Our state dict renamed to the `encodec` package's key names (what its .th files hold)."""
    out = {}
    for key, value in codec.state_dict().items():
        if legacy_weight_norm:
            key = key.replace("parametrizations.weight.original0", "weight_g")
            key = key.replace("parametrizations.weight.original1", "weight_v")
        if key.startswith("quantizer.layers."):
            _, _, k, leaf = key.split(".")
            key = f"quantizer.vq.layers.{k}._codebook.{leaf}"
            value = value.float() if leaf == "inited" else value  # a float flag in encodec
        out[key] = value
    return out


@pytest.mark.parametrize(("true_skip", "legacy_weight_norm"), [(False, True), (True, False)])
def test_encodec_th_layout_infers_architecture(tmp_path, true_skip, legacy_weight_norm):
    seanet = SEANetConfig(
        n_filters=4, dimension=16, ratios=(8, 5, 4, 2), causal=True, true_skip=true_skip, lstm=2, n_residual_layers=1
    )
    torch.manual_seed(0)
    source = Codec(CodecConfig(seanet=seanet, n_q=32, card=1024)).eval()
    path = tmp_path / "encodec_24khz-test.th"
    torch.save(_as_encodec_th(source, legacy_weight_norm), path)
    loaded = Codec.from_pretrained(path)
    assert loaded.config.seanet == seanet
    assert (loaded.config.n_q, loaded.card, loaded.sample_rate) == (32, 1024, 24000)
    assert loaded.bandwidths == (1.5, 3.0, 6.0, 12.0, 24.0) and loaded.frame_rate == 75
    assert loaded.fingerprint() == source.fingerprint()


def test_bad_th_files_raise(tmp_path):
    garbage = tmp_path / "garbage.th"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(MusicLMError, match="not a readable torch checkpoint"):
        load_encodec_th(garbage)
    other = tmp_path / "other.th"
    torch.save({"linear.weight": torch.zeros(2, 2)}, other)
    with pytest.raises(MusicLMError, match="not an EnCodec state dict"):
        Codec.from_pretrained(other)
    group_norm = tmp_path / "encodec_48khz.th"
    torch.save(
        {
            "encoder.model.0.conv.conv.weight": torch.zeros(32, 2, 7),
            "encoder.model.0.conv.norm.weight": torch.zeros(32),
        },
        group_norm,
    )
    with pytest.raises(MusicLMError, match="48 kHz"):
        Codec.from_pretrained(group_norm)
    source = Codec(CodecConfig(seanet=SEANetConfig(n_filters=4, dimension=16, causal=True, lstm=2), n_q=4))
    state = _as_encodec_th(source)
    state.pop("encoder.model.1.block.1.conv.conv.bias")
    truncated = tmp_path / "truncated.th"
    torch.save(state, truncated)
    with pytest.raises(MusicLMError, match=r"missing encoder\.model\.1\.block\.1\.conv\.conv\.bias"):
        Codec.from_pretrained(truncated)
    state.pop("encoder.model.3.conv.conv.weight_v")  # a strided conv: its kernel gives a ratio
    torch.save(state, truncated)
    with pytest.raises(MusicLMError, match=r"incomplete EnCodec state dict .*encoder\.model\.3\.conv\.conv"):
        Codec.from_pretrained(truncated)
