"""Invariants of the codec: lengths, bandwidths, encode/decode vs the quantized forward, checkpoints."""

import json
import math

import pytest
import torch

from musiclm.codec import Codec, CodecConfig, SEANetConfig
from musiclm.errors import MusicLMError


def _trained_a_little(codec: Codec, steps: int = 3) -> Codec:
    """Run training forwards so the EMA codebooks are k-means initialised and updated."""
    codec.train()
    for _ in range(steps):
        codec(torch.randn(4, 1, 800) * 0.3)
    return codec.eval()


@pytest.mark.parametrize("length", [1, 7, 8, 9, 799, 1001])
def test_output_length_equals_input_length(any_tiny_codec, length):
    wav = torch.randn(2, 1, length) * 0.1
    codes = any_tiny_codec.encode(wav)
    assert codes.shape == (2, any_tiny_codec.n_q, math.ceil(length / any_tiny_codec.hop_length))
    assert codes.dtype == torch.int64
    assert any_tiny_codec.decode(codes, length).shape == wav.shape
    recon, _ = any_tiny_codec(wav)
    assert recon.shape == wav.shape


def test_decode_of_encode_equals_quantized_forward(any_tiny_codec):
    codec = _trained_a_little(any_tiny_codec)
    wav = torch.randn(3, 1, 1001) * 0.2
    for kbps in codec.bandwidths:
        codec.set_bandwidth(kbps)
        codes = codec.encode(wav)
        recon, q = codec(wav)
        assert torch.equal(codes, q.codes)
        torch.testing.assert_close(codec.decode(codes, wav.shape[-1]), recon, atol=1e-5, rtol=0)


def test_bandwidth_selects_a_prefix_of_codebooks(tiny_codec):
    codec = _trained_a_little(tiny_codec)
    wav = torch.randn(1, 1, 400) * 0.2
    per_q_kbps = codec.frame_rate * math.log2(codec.card) / 1000  # 6 kbps here
    previous = None
    for kbps in sorted(codec.bandwidths):
        codec.set_bandwidth(kbps)
        assert codec.n_q == min(codec.config.n_q, max(1, math.floor(kbps / per_q_kbps)))
        codes = codec.encode(wav)
        if previous is not None:  # residual quantization: more bandwidth only appends codebooks
            assert torch.equal(codes[:, : previous.shape[1]], previous)
        previous = codes
    with pytest.raises(MusicLMError, match="bandwidth"):
        codec.set_bandwidth(5.0)


def test_encodec_bandwidth_rule():
    config = CodecConfig(seanet=SEANetConfig(ratios=(8, 5, 4, 2)), n_q=32, card=1024)
    assert config.frame_rate == 75
    assert [config.n_q_for_bandwidth(b) for b in (1.5, 3.0, 6.0, 12.0, 24.0)] == [2, 4, 8, 16, 32]


def test_more_codebooks_reconstruct_better(any_tiny_codec):
    codec = _trained_a_little(any_tiny_codec, steps=10)
    wav = torch.randn(4, 1, 800) * 0.3
    with torch.no_grad():
        latent = codec.encoder(wav)
    errors = []
    for n_q in range(1, codec.config.n_q + 1):
        quantized = codec.quantizer.decode(codec.quantizer.encode(latent, n_q))
        errors.append(float((quantized - latent).pow(2).mean()))
    assert all(b <= a + 1e-6 for a, b in zip(errors, errors[1:], strict=False)), errors


def test_training_updates_codebooks_and_passes_gradients(any_tiny_codec):
    codec = any_tiny_codec.train()
    wav = torch.randn(2, 1, 800) * 0.3
    recon, q = codec(wav)
    assert bool(codec.quantizer.layers[0].inited)
    (recon - wav).abs().mean().add(q.commit_loss).backward()
    first_encoder_weight = next(codec.encoder.parameters())  # the straight-through estimator reaches it
    assert first_encoder_weight.grad.abs().sum() > 0
    assert torch.isfinite(q.commit_loss)


def test_dead_codes_are_restarted(tiny_codec):
    codebook = tiny_codec.quantizer.layers[0].train()
    x = torch.randn(256, codebook.embed.shape[1])
    codebook(x)
    codebook.cluster_size[:10] = 0.0  # pretend ten codes went unused
    codebook._restart_dead_codes(x)
    assert (codebook.cluster_size >= codebook.dead_code_threshold).all()
    # restarted codes sit on batch vectors
    d = torch.cdist(codebook.embed[:10], x).min(dim=1).values
    assert torch.allclose(d, torch.zeros(10), atol=1e-5)


def test_save_load_round_trip_is_bit_exact(any_tiny_codec, tmp_path):
    codec = _trained_a_little(any_tiny_codec)
    codec.save_pretrained(tmp_path / "codec")
    loaded = Codec.from_pretrained(tmp_path / "codec")
    wav = torch.randn(1, 1, 777) * 0.2
    assert torch.equal(codec.encode(wav), loaded.encode(wav))
    assert torch.equal(codec.decode(codec.encode(wav)), loaded.decode(loaded.encode(wav)))
    assert loaded.fingerprint() == codec.fingerprint()
    assert json.loads((tmp_path / "codec" / "config.json").read_text())["model_type"] == "musiclm-codec"


def test_fingerprint_names_the_token_space_not_the_decoder(tiny_codec):
    before = tiny_codec.fingerprint()
    with torch.no_grad():
        tiny_codec.decoder.model[-1].conv.conv.bias.add_(1e-3)  # a retrained decoder: same codes
    assert tiny_codec.fingerprint() == before
    with torch.no_grad():
        next(tiny_codec.encoder.parameters()).add_(1e-3)
    after_encoder = tiny_codec.fingerprint()
    assert after_encoder != before
    with torch.no_grad():
        tiny_codec.quantizer.layers[0].embed.add_(1e-3)  # other codebooks: other codes
    assert tiny_codec.fingerprint() != after_encoder


def test_fingerprint_follows_every_change_to_the_weights(tiny_codec):
    """The digest is cached between calls (the compressor asks once per file); loading other weights, an
    optimizer step and replaced tensors must each give a new one, and going back the old one."""
    before = tiny_codec.fingerprint()
    saved = {k: v.clone() for k, v in tiny_codec.state_dict().items()}
    optimizer = torch.optim.SGD(tiny_codec.encoder.parameters(), lr=0.1)
    wav = torch.randn(1, 1, 640) * 0.2
    tiny_codec.encoder(wav).square().mean().backward()
    optimizer.step()
    stepped = tiny_codec.fingerprint()
    assert stepped != before
    tiny_codec.load_state_dict(saved)
    assert tiny_codec.fingerprint() == before
    first = next(tiny_codec.encoder.parameters())
    tiny_codec.load_state_dict(
        {**saved, **{k: v + 1e-3 for k, v in saved.items() if k.startswith("encoder.")}}, assign=True
    )
    assert next(tiny_codec.encoder.parameters()) is not first
    assert tiny_codec.fingerprint() not in (before, stepped)


def test_bad_checkpoints_raise_clear_errors(tiny_codec, tmp_path):
    with pytest.raises(MusicLMError, match="not found"):
        Codec.from_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(MusicLMError, match="config.json"):
        Codec.from_pretrained(tmp_path / "empty")
    tiny_codec.save_pretrained(tmp_path / "c")
    (tmp_path / "c" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(MusicLMError, match="unreadable"):
        Codec.from_pretrained(tmp_path / "c")
    (tmp_path / "c" / "config.json").write_text('{"model_type": "musiclm-codec", "n_q": "many"}')
    with pytest.raises(MusicLMError, match="n_q"):
        Codec.from_pretrained(tmp_path / "c")


def test_bad_audio_shapes_raise(tiny_codec):
    with pytest.raises(MusicLMError, match="empty"):
        tiny_codec.encode(torch.zeros(1, 1, 0))
    with pytest.raises(MusicLMError, match="shaped"):
        tiny_codec.encode(torch.zeros(1, 2, 100))
    with pytest.raises(MusicLMError, match="range"):
        tiny_codec.decode(torch.full((1, 2, 3), 999))


def test_checkpoint_leaves_out_ema_sums_and_rebuilds_them(tiny_codec, tmp_path):
    from safetensors.torch import load_file

    codec = _trained_a_little(tiny_codec)
    codec.save_pretrained(tmp_path / "c", dtype=torch.float16)
    assert not any(k.endswith("embed_avg") for k in load_file(str(tmp_path / "c" / "model.safetensors")))
    loaded = Codec.from_pretrained(tmp_path / "c")
    layer = loaded.quantizer.layers[0]
    torch.testing.assert_close(layer.embed_avg, layer.embed * layer.cluster_size[:, None])
    # fp16 storage: the codes of a fresh encode still match the fp32 model on almost every frame
    wav = torch.randn(2, 1, 4000) * 0.2
    agree = (loaded.encode(wav) == codec.encode(wav)).float().mean()
    assert agree > 0.9, agree
