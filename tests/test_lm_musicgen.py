"""A transformers MusicGen directory loads as a MusicLM: same logits, same greedy tokens (tiny random model)."""

from __future__ import annotations

import shutil

import pytest
import torch
from test_lm_model import train_tokenizer

from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM, apply_delay
from musiclm.lm.sample import SamplingParams, generate_codes

transformers = pytest.importorskip("transformers")
# slow: builds a transformers MusicGen, ~7 s of imports and set-up
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

CARD, K = 64, 4


@pytest.fixture(scope="module")
def musicgen_dir(tmp_path_factory):
    from musiclm.lm.musicgen import save_random_musicgen

    path = tmp_path_factory.mktemp("musicgen")
    tokenizer = train_tokenizer(path, t5_ids=True)
    torch.manual_seed(0)
    model = save_random_musicgen(
        path / "model",
        tokenizer.path,
        dim=48,
        n_layers=2,
        n_heads=4,
        ffn_dim=96,
        n_q=K,
        card=CARD,
        text_dim=32,
        max_positions=256,
    )
    return path / "model", model


def test_same_logits_as_transformers(musicgen_dir):
    path, reference = musicgen_dir
    ours = MusicLM.from_pretrained(path, load_codec=False)
    ids, mask = ours.tokenizer.encode(["calm piano in c major", "fast flute"], 64)
    codes = apply_delay(torch.randint(0, CARD, (2, K, 12)), CARD)
    S = codes.shape[-1]
    decoder_in = torch.cat([torch.full((2, K, 1), CARD), codes[..., :-1]], dim=-1).reshape(2 * K, S)
    with torch.no_grad():
        theirs = reference(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_in).logits
        mine = ours(codes, ids, mask)
    torch.testing.assert_close(mine, theirs.view(2, K, S, CARD), atol=1e-4, rtol=0)


def test_greedy_generation_gives_the_same_tokens(musicgen_dir):
    path, reference = musicgen_dir
    ours = MusicLM.from_pretrained(path, load_codec=False)
    ids, mask = ours.tokenizer.encode(["slow strings in d minor", "a bright brass fanfare, fast"], 64)
    captured = {}
    decode = reference.audio_encoder.decode

    def capture(codes, *args, **kwargs):  # transformers returns audio; keep the codes it decodes
        captured["codes"] = codes
        return decode(codes, *args, **kwargs)

    reference.audio_encoder.decode = capture
    try:
        with torch.no_grad():
            reference.generate(
                input_ids=ids, attention_mask=mask.long(), do_sample=False, guidance_scale=3.0, max_new_tokens=20
            )
    finally:
        reference.audio_encoder.decode = decode
    theirs = captured["codes"][0]  # [B, K, T]
    mine = generate_codes(ours, ids, mask, theirs.shape[-1], SamplingParams(temperature=0, cfg=3.0), amp_dtype=None)
    assert torch.equal(mine, theirs)


def test_musicgen_codec_loads_through_our_encodec_interop(musicgen_dir):
    path, reference = musicgen_dir
    try:
        ours = MusicLM.from_pretrained(path)
    except MusicLMError as e:
        if "not implemented" in str(e):
            pytest.skip("EnCodec interop not available yet")
        raise
    assert ours.codec.sample_rate == 32000 and ours.codec.card == CARD
    codes = torch.randint(0, CARD, (1, K, 10))
    with torch.no_grad():
        theirs = reference.audio_encoder.decode(codes[None], [None]).audio_values
        mine = ours.codec.decode(codes)
    torch.testing.assert_close(mine[..., : theirs.shape[-1]], theirs[..., : mine.shape[-1]], atol=1e-4, rtol=0)


def test_stereo_musicgen_is_refused(musicgen_dir, tmp_path):
    import json

    path, _ = musicgen_dir
    shutil.copytree(path, tmp_path / "stereo")
    meta = json.loads((tmp_path / "stereo" / "config.json").read_text())
    meta["decoder"]["audio_channels"] = 2
    (tmp_path / "stereo" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(MusicLMError, match="stereo"):
        MusicLM.from_pretrained(tmp_path / "stereo")
