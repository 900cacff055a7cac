"""The LM module: delay pattern, cached decoding == full forward, text side, checkpoints."""

from __future__ import annotations

import json

import pytest
import torch

from musiclm.errors import MusicLMError
from musiclm.lm import LMConfig, MusicLM, apply_delay, delay_valid_mask, undo_delay
from musiclm.text import TextConfig, TextTokenizer

pytestmark = pytest.mark.usefixtures("one_thread")

CAPTIONS = [
    "calm piano in c major, slow",
    "a fast bright folk tune on flute in g major",
    "slow melancholic string quartet in d minor",
    "bright brass fanfare, fast tempo",
    "gentle guitar ballad in a minor",
    "lively dance for violin and drums",
] * 4


def train_tokenizer(directory, vocab_size: int = 48, t5_ids: bool = False) -> TextTokenizer:
    """A tiny SentencePiece model trained on a few captions (the real one is built from the corpus)."""
    import sentencepiece as spm

    ids = dict(pad_id=0, eos_id=1, unk_id=2, bos_id=-1) if t5_ids else {}
    prefix = directory / "sp"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS),
        model_prefix=str(prefix),
        vocab_size=vocab_size,
        hard_vocab_limit=False,
        minloglevel=2,
        **ids,
    )
    return TextTokenizer(f"{prefix}.model", add_eos=t5_ids)


def tiny_config(vocab_size: int = 48, card: int = 32, **kw) -> LMConfig:
    text = TextConfig(vocab_size=vocab_size, dim=16, n_layers=1, n_heads=2, ffn_dim=32, max_len=16)
    return LMConfig(n_q=4, card=card, dim=32, n_layers=2, n_heads=4, ffn_dim=64, max_frames=24, text=text, **kw)


def debug_model_dir(root, sample_rate: int = 8000, **lm_fields):
    """checkpoints-like layout: <root>/codec (random, hop 160 → 50 frames/s at 8 kHz) and <root>/musiclm (a
    random tiny LM with its tokenizer, codec "../codec"; `lm_fields` change its config, e.g. note_features);
    returns the LM directory."""
    from musiclm.codec import Codec, CodecConfig, SEANetConfig

    torch.manual_seed(0)
    seanet = SEANetConfig(n_filters=4, dimension=16, ratios=(5, 4, 4, 2))
    codec = Codec(CodecConfig(name="debug", sample_rate=sample_rate, seanet=seanet, n_q=4, card=64, bandwidths=(1.2,)))
    codec.save_pretrained(root / "codec")
    torch.manual_seed(1)
    config = tiny_config(card=64, frame_rate=50.0, sample_rate=sample_rate, **lm_fields)
    lm = MusicLM(config, tokenizer=train_tokenizer(root))
    return lm.save_pretrained(root / "musiclm", codec_path="../codec")


def tiny_lm(seed: int = 0, **kw) -> MusicLM:
    torch.manual_seed(seed)
    return MusicLM(tiny_config(**kw)).eval()


def text_batch(B: int = 2, L: int = 6, vocab: int = 48):
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, vocab, (B, L), generator=g)
    mask = torch.ones(B, L, dtype=torch.bool)
    mask[-1, L // 2 :] = False  # one padded caption
    return ids, mask


# ---- delay pattern ----------------------------------------------------------------------------------
@pytest.mark.parametrize("K,T", [(1, 5), (4, 1), (4, 7), (8, 3)])
def test_delay_round_trip_and_layout(K, T):
    codes = torch.randint(0, 16, (3, K, T))
    delayed = apply_delay(codes, special=16)
    assert delayed.shape == (3, K, T + K - 1)
    assert torch.equal(undo_delay(delayed), codes)
    valid = delay_valid_mask(K, T)
    assert torch.equal(valid.expand_as(delayed), delayed != 16)
    for k in range(K):  # delayed[k, s] == codes[k, s - k]
        assert torch.equal(delayed[:, k, k : k + T], codes[:, k])


# ---- the decoder ------------------------------------------------------------------------------------
def test_cached_steps_equal_full_forward():
    model = tiny_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 10)), model.special_id)
    S = codes.shape[-1]
    inputs = torch.cat([torch.full((2, 4, 1), model.special_id), codes[..., :-1]], dim=-1)
    with torch.no_grad():
        full = model(codes, ids, mask)  # [B, K, S, card]
        memory, memory_mask = model.encode_text(ids, mask)
        for static in (False, True):  # eager prefix reads and static masked reads
            cache = model.new_cache(memory, memory_mask, S)
            steps = [
                model.decode_step(inputs[..., s : s + 1], cache, torch.tensor([s]), None if static else s + 1)
                for s in range(S)
            ]
            torch.testing.assert_close(torch.stack(steps, dim=2), full, atol=1e-5, rtol=1e-5)
        cache = model.new_cache(memory, memory_mask, S)  # prefill of 5, then single steps
        first = model.decode_step(inputs[..., :5], cache, torch.arange(5), 5)
        torch.testing.assert_close(first, full[:, :, 4], atol=1e-5, rtol=1e-5)
        nxt = model.decode_step(inputs[..., 5:6], cache, torch.tensor([5]), 6)
        torch.testing.assert_close(nxt, full[:, :, 5], atol=1e-5, rtol=1e-5)


def test_logits_are_causal_in_the_delayed_steps():
    model = tiny_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 8)), model.special_id)
    changed = codes.clone()
    changed[..., 6:] = torch.randint(0, 32, changed[..., 6:].shape)
    with torch.no_grad():
        a, b = model(codes, ids, mask), model(changed, ids, mask)
    torch.testing.assert_close(a[:, :, :7], b[:, :, :7])  # step s sees codes[:, :, :s] only
    assert not torch.allclose(a[:, :, 7:], b[:, :, 7:])


def test_loss_counts_only_real_codes():
    model = tiny_lm()
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 6)), model.special_id)
    logits = model(codes, ids, mask)
    loss, per_q = model.loss(logits, codes)
    assert per_q.shape == (4,) and torch.isclose(loss, per_q.mean())
    loss.backward()
    assert model.heads.weight.grad is not None and model.text_encoder.embed.weight.grad is not None
    # changing the logits at special cells leaves the loss unchanged
    bumped = logits.detach().clone()
    bumped[~model.valid_mask(codes)] += torch.randn_like(bumped[~model.valid_mask(codes)])
    torch.testing.assert_close(model.loss(bumped, codes)[0], model.loss(logits.detach(), codes)[0])


def test_null_condition_ignores_the_words_and_condition_dropout_uses_it():
    model = tiny_lm(condition_dropout=1.0)
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 5)), model.special_id)
    none = torch.zeros_like(mask)
    with torch.no_grad():
        a = model(codes, ids, none)
        b = model(codes, torch.randint(0, 48, ids.shape), none)
        cond = model(codes, ids, mask)
        model.train()  # condition_dropout = 1: every caption becomes the null condition
        dropped = model(codes, ids, mask)
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(dropped, a)
    assert not torch.allclose(cond, a)


# ---- text -------------------------------------------------------------------------------------------
def test_tokenizer_pads_truncates_and_masks(tmp_path):
    tok = train_tokenizer(tmp_path)
    ids, mask = tok.encode(["calm piano in c major, slow", "flute", ""], max_len=5)
    assert ids.dtype == torch.int64 and mask.dtype == torch.bool and ids.shape == mask.shape
    assert ids.shape[1] <= 5 and mask[0].all() and not mask[2].any()
    assert (ids[~mask] == tok.pad_id).all()
    again = TextTokenizer(tok.path)  # stable ids across loads
    assert torch.equal(again.encode(["flute"], 5)[0], tok.encode(["flute"], 5)[0])
    with pytest.raises(MusicLMError, match="not found"):
        TextTokenizer(tmp_path / "missing.model")


def test_frozen_t5_text_encoder_round_trips(tmp_path):
    from transformers import T5Config, T5EncoderModel

    from musiclm.text.encoder import t5_text_config

    torch.manual_seed(0)
    T5EncoderModel(T5Config(vocab_size=48, d_model=24, d_kv=6, d_ff=32, num_layers=1, num_heads=4)).save_pretrained(
        tmp_path / "t5"
    )
    text, t5_state = t5_text_config(tmp_path / "t5", max_len=16)
    config = tiny_config()
    config.text = text
    model = MusicLM(config, tokenizer=train_tokenizer(tmp_path, t5_ids=True))
    model.load_state_dict(t5_state, strict=False)
    model.train()
    assert not model.text_encoder.t5.training  # frozen: stays in eval mode
    assert not any(p.requires_grad for p in model.text_encoder.parameters())
    model.eval()
    model.save_pretrained(tmp_path / "lm")
    loaded = MusicLM.from_pretrained(tmp_path / "lm")
    ids, mask = loaded.tokenizer.encode(["slow strings in d minor", "fast flute"], 16)
    codes = apply_delay(torch.randint(0, 32, (2, 4, 4)), model.special_id)
    with torch.no_grad():
        torch.testing.assert_close(loaded(codes, ids, mask), model(codes, ids, mask))


# ---- checkpoints ------------------------------------------------------------------------------------
def test_save_load_round_trip_and_bad_dirs(tmp_path):
    model = tiny_lm()
    model.tokenizer = train_tokenizer(tmp_path)
    model.save_pretrained(tmp_path / "lm")
    meta = json.loads((tmp_path / "lm" / "config.json").read_text())
    assert meta["model_type"] == "musiclm-lm" and (tmp_path / "lm" / "tokenizer.model").is_file()
    loaded = MusicLM.from_pretrained(tmp_path / "lm")
    ids, mask = text_batch()
    codes = apply_delay(torch.randint(0, 32, (2, 4, 4)), model.special_id)
    with torch.no_grad():
        assert torch.equal(loaded(codes, ids, mask), model(codes, ids, mask))
    # fp16 storage (the shipped model): half the file, float32 parameters again after loading
    model.save_pretrained(tmp_path / "lm16", dtype=torch.float16)
    size16, size32 = ((tmp_path / d / "model.safetensors").stat().st_size for d in ("lm16", "lm"))
    assert size16 < 0.6 * size32
    loaded16 = MusicLM.from_pretrained(tmp_path / "lm16")
    assert all(p.dtype == torch.float32 for p in loaded16.parameters())
    with torch.no_grad():
        torch.testing.assert_close(loaded16(codes, ids, mask), model(codes, ids, mask), atol=2e-2, rtol=0)

    with pytest.raises(MusicLMError, match="not found"):
        MusicLM.from_pretrained(tmp_path / "nowhere")
    with pytest.raises(MusicLMError, match="no config.json"):
        MusicLM.from_pretrained(tmp_path)
    (tmp_path / "lm" / "config.json").write_text(json.dumps({**meta, "n_layers": "six"}))
    with pytest.raises(MusicLMError, match="n_layers"):
        MusicLM.from_pretrained(tmp_path / "lm")
    (tmp_path / "lm" / "config.json").write_text(json.dumps({**meta, "n_layers": 3}))
    with pytest.raises(MusicLMError, match="config.json disagrees with model.safetensors: n_layers is 3"):
        MusicLM.from_pretrained(tmp_path / "lm")
    (tmp_path / "lm" / "config.json").write_text(json.dumps(meta))
    (tmp_path / "lm" / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(MusicLMError, match="unreadable"):
        MusicLM.from_pretrained(tmp_path / "lm")


def test_lm_remembers_its_codec_token_space_and_refuses_another(tmp_path):
    from musiclm.codec import Codec

    lm_dir = debug_model_dir(tmp_path)
    codec = Codec.from_pretrained(tmp_path / "codec")
    # the LM was saved with no codec attached: an old directory, no fingerprint, loads as before
    assert "codec_fingerprint" not in json.loads((lm_dir / "config.json").read_text())
    model = MusicLM.from_pretrained(lm_dir)
    model.save_pretrained(lm_dir, codec_path="../codec")  # now saved beside its codec: the fingerprint is kept
    assert json.loads((lm_dir / "config.json").read_text())["codec_fingerprint"] == codec.fingerprint()
    # a load without the codec, saved again elsewhere, still carries it
    bare = MusicLM.from_pretrained(lm_dir, load_codec=False)
    bare.save_pretrained(tmp_path / "copy" / "musiclm", codec_path="../../codec")
    assert MusicLM.from_pretrained(tmp_path / "copy" / "musiclm").codec_fingerprint == codec.fingerprint()

    # a decoder trained further keeps the token space: accepted
    with torch.no_grad():
        next(codec.decoder.parameters()).add_(0.1)
    codec.save_pretrained(tmp_path / "codec")
    assert MusicLM.from_pretrained(lm_dir).codec is not None
    # new codebooks make other tokens: refused with one line that says what to do
    with torch.no_grad():
        for name, buf in codec.quantizer.named_buffers():
            if name.endswith("embed"):
                buf.mul_(1.5)
    codec.save_pretrained(tmp_path / "codec")
    with pytest.raises(MusicLMError, match="makes other tokens .* than the LM was trained on"):
        MusicLM.from_pretrained(lm_dir)


def test_shipped_model_missing_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("MUSICLM_CHECKPOINTS", str(tmp_path))
    with pytest.raises(MusicLMError, match="missing"):
        MusicLM.from_pretrained()
