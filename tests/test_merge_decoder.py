"""train/merge_decoder.py: a decoder trained elsewhere goes into a codec whose encoder, codebooks and
fingerprint stay; anything that would touch the codes is refused with one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from musiclm.codec import Codec

SCRIPT = Path(__file__).resolve().parents[1] / "train" / "merge_decoder.py"


def _merge(root: Path, weights: str, out: str, *extra: str, part: str = "--decoder") -> subprocess.CompletedProcess:
    """train/merge_decoder.py on root/codec with root/WEIGHTS (a decoder, or an encoder with part="--encoder")
    into root/OUT (plus `extra` arguments)."""
    args = ["--codec", str(root / "codec"), part, str(root / weights), "--out", str(root / out), *extra]
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=120)


def _trained_part(codec, part: str, path, step: int) -> dict[str, torch.Tensor]:
    """The codec's `part`.* weights moved a little, in fp16, as a training phase brings them back (saved at
    `path` with its step)."""
    trained = {
        k: (v + 0.01 * torch.randn_like(v)).half()
        for k, v in codec.state_dict().items()
        if k.startswith(f"{part}.") and v.is_floating_point()
    }
    save_file(trained, str(path), metadata={"step": str(step)})
    return trained


def test_merge_replaces_the_decoder_and_keeps_the_fingerprint(tiny_codec, tmp_path):
    tiny_codec.save_pretrained(tmp_path / "codec")
    shipped = Codec.from_pretrained(tmp_path / "codec")
    trained = _trained_part(shipped, "decoder", tmp_path / "decoder.safetensors", step=7)

    done = _merge(tmp_path, "decoder.safetensors", "merged", "--name", "tiny-merged")
    assert done.returncode == 0, done.stderr
    merged = Codec.from_pretrained(tmp_path / "merged")
    assert merged.fingerprint() == shipped.fingerprint() and merged.config.name == "tiny-merged"
    state = merged.state_dict()
    for key, value in trained.items():
        torch.testing.assert_close(state[key].half(), value)
    assert any(not torch.equal(state[k], shipped.state_dict()[k].to(state[k].dtype)) for k in trained)
    assert '"step": "7"' in (tmp_path / "merged" / "merged_from.json").read_text()


def test_merge_refuses_what_would_change_the_codes(tiny_codec, tmp_path):
    tiny_codec.save_pretrained(tmp_path / "codec")
    state = tiny_codec.state_dict()
    encoder_key = next(k for k in state if k.startswith("encoder.") and state[k].is_floating_point())
    save_file({encoder_key: state[encoder_key]}, str(tmp_path / "encoder.safetensors"))
    done = _merge(tmp_path, "encoder.safetensors", "bad")
    assert done.returncode == 1 and "decoder.* weights only" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "bad").exists()

    decoder = {k: v for k, v in state.items() if k.startswith("decoder.")}
    save_file(decoder, str(tmp_path / "decoder.safetensors"))
    done = _merge(tmp_path, "decoder.safetensors", "bad", "--set", "sample_rate=16000")
    assert done.returncode == 1 and "only" in done.stderr and not (tmp_path / "bad").exists()


def test_merge_takes_a_grown_frame_decoder_with_its_shape(tmp_path):
    """A frame decoder trained with more blocks and a head MLP (FrameDecoder.deepen_state, head_hidden) merges
    with the shape its weights have, and decodes as it did where it trained."""
    from dataclasses import replace

    from musiclm.codec import CodecConfig
    from musiclm.codec.framenet import FrameNetConfig

    torch.manual_seed(0)
    frame = FrameNetConfig(dimension=16, hop_length=8, width=16, encoder_layers=2, decoder_layers=2)
    config = CodecConfig(name="tiny-frame", sample_rate=8000, backbone="frame", frame=frame, n_q=4, card=64)
    shipped = Codec(config).eval()
    shipped.save_pretrained(tmp_path / "codec")
    grown = Codec(replace(config, frame=replace(frame, decoder_layers=4, head_hidden=8))).eval()
    grown.load_state_dict(
        {**grown.state_dict(), **{k: v for k, v in shipped.state_dict().items() if not k.startswith("decoder.")}}
    )
    decoder = {k: v for k, v in grown.state_dict().items() if k.startswith("decoder.")}
    save_file(decoder, str(tmp_path / "decoder.safetensors"))

    done = _merge(tmp_path, "decoder.safetensors", "merged")
    assert done.returncode == 0, done.stderr
    merged = Codec.from_pretrained(tmp_path / "merged")
    assert merged.config.frame.decoder_layers == 4 and merged.config.frame.head_hidden == 8
    assert merged.fingerprint() == Codec.from_pretrained(tmp_path / "codec").fingerprint()
    codes = shipped.encode(0.3 * torch.randn(1, 1, 800))
    with torch.no_grad():
        torch.testing.assert_close(merged.decode(codes), grown.decode(codes))


def test_an_encoder_merge_keeps_what_the_codes_sound_like_and_refuses_another_encoder(tiny_codec, tmp_path):
    tiny_codec.save_pretrained(tmp_path / "codec")
    shipped = Codec.from_pretrained(tmp_path / "codec")
    trained = _trained_part(shipped, "encoder", tmp_path / "encoder.safetensors", step=9)
    done = _merge(tmp_path, "encoder.safetensors", "merged", part="--encoder")
    assert done.returncode == 0, done.stderr
    merged = Codec.from_pretrained(tmp_path / "merged")
    assert merged.sound_fingerprint() == shipped.sound_fingerprint()
    assert merged.fingerprint() != shipped.fingerprint()
    for key, value in trained.items():
        torch.testing.assert_close(merged.state_dict()[key].half(), value)

    one_short = dict(list(trained.items())[1:])
    save_file(one_short, str(tmp_path / "short.safetensors"))
    done = _merge(tmp_path, "short.safetensors", "bad", part="--encoder")
    assert done.returncode == 1 and "not this codec's encoder" in done.stderr and not (tmp_path / "bad").exists()
