"""LM training: step-indexed token crops, LR schedule, exact resume, validation perplexity, export."""

from __future__ import annotations

import csv
import json
import math

import pytest
import torch
import yaml
from torch import nn

from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM, apply_delay
from musiclm.training import token_dataset
from musiclm.training.config import OptimConfig
from musiclm.training.runner import lr_scheduler
from musiclm.training.token_dataset import TokenCrops, TokenItem

CAPTIONS = [
    "calm piano in c major, slow",
    "a fast bright folk tune on flute in g major",
    "slow melancholic string quartet in d minor",
    "bright brass fanfare, fast tempo",
]
CARD, K = 32, 4


@pytest.fixture(scope="module")
def tokenizer_path(tmp_path_factory):
    import sentencepiece as spm

    prefix = tmp_path_factory.mktemp("tok") / "sp"
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CAPTIONS * 4),
        model_prefix=str(prefix),
        vocab_size=40,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    return f"{prefix}.model"


def make_items(n: int, seed: int) -> list[TokenItem]:
    """Learnable toy 'music': codebook k of caption c repeats a short pattern; lengths vary (some short)."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        c = i % len(CAPTIONS)
        T = int(torch.randint(6, 40, (1,), generator=g))
        t = torch.arange(T)
        codes = torch.stack([(t * (k + 1) + 3 * c) % CARD for k in range(K)])
        items.append(TokenItem(codes.to(torch.int16), CAPTIONS[c], f"item{i}"))
    return items


@pytest.fixture
def fake_shards(monkeypatch):
    splits = {"train": make_items(12, 0), "valid": make_items(5, 1)}
    monkeypatch.setattr(
        token_dataset, "load_token_items", lambda dirs, split, n_q, fp=None, notes=False: splits.get(split, [])
    )
    return splits


def overrides(tokenizer_path: str, **trainer) -> dict:
    lm = {
        "n_q": K,
        "card": CARD,
        "dim": 32,
        "n_layers": 2,
        "n_heads": 4,
        "ffn_dim": 64,
        "max_frames": 16,
        "condition_dropout": 0.3,
        "dropout": 0.1,
        "text": {"vocab_size": 40, "dim": 16, "n_layers": 1, "n_heads": 2, "ffn_dim": 32, "max_len": 16},
    }
    data = {"shards": ["fake"], "tokenizer": tokenizer_path, "frames": 16, "batch_size": 4, "val_batches": 2}
    base = {
        "max_steps": 4,
        "checkpoint_every": 2,
        "log_every": 1,
        "sample_every": 0,
        "val_every": 2,
        "num_threads": 1,
        "num_workers": 0,
        "wandb": False,
    }
    optim = {"warmup_steps": 2, "lr": 1e-3, "schedule_steps": 4}
    return {"lm": lm, "data": data, "optim": optim, "trainer": {**base, **trainer}}


def test_crops_are_deterministic_and_padding_is_not_a_target(tokenizer_path):
    from musiclm.text import TextTokenizer

    tok = TextTokenizer(tokenizer_path)
    items = make_items(6, 0)
    crops = TokenCrops(items, 50, 3, seed=5, rank=0, tokenizer=tok, max_len=16, pad=CARD)
    a, b = crops[3], TokenCrops(items, 50, 3, seed=5, rank=0, tokenizer=tok, max_len=16, pad=CARD)[3]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(crops[3]["codes"], crops[4]["codes"])
    codes = a["codes"]  # [B, K, 50]; every item is shorter than 50 frames, so each row ends in padding
    assert codes.shape == (3, K, 50) and bool((codes[:, :, -1] == CARD).all())
    delayed = apply_delay(codes, CARD)
    valid = delayed != CARD
    lengths = (codes[:, 0] != CARD).sum(-1)
    assert valid.sum(dim=(1, 2)).tolist() == (lengths * K).tolist()


def test_warmup_then_cosine():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = lr_scheduler(opt, OptimConfig(lr=1.0, warmup_steps=4, schedule="cosine", min_lr_ratio=0.1), 20)
    lrs = []
    for _ in range(20):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:4] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert all(x >= y for x, y in zip(lrs[4:], lrs[5:], strict=False))
    assert lrs[-1] == pytest.approx(0.1, abs=0.02)


def _export_state(run):
    from safetensors.torch import load_file

    return load_file(str(run / "export" / "model.safetensors"))


@pytest.mark.slow
def test_resume_is_exact_and_validation_reports_perplexity(fake_shards, tokenizer_path, tmp_path):
    from musiclm.training.recipes import train_lm

    train_lm_cfg = overrides(tokenizer_path)
    cfg_file = tmp_path / "lm.yaml"
    cfg_file.write_text(yaml.safe_dump({"lm": train_lm_cfg["lm"], "data": train_lm_cfg["data"]}))
    train_lm(
        cfg_file, tmp_path / "straight", overrides={k: v for k, v in train_lm_cfg.items() if k in ("optim", "trainer")}
    )
    train_lm(
        cfg_file,
        tmp_path / "split",
        overrides={"optim": train_lm_cfg["optim"], "trainer": {**train_lm_cfg["trainer"], "max_steps": 3}},
    )
    trainer = train_lm(None, tmp_path / "split", resume=True, overrides={"trainer": {"max_steps": 4}})
    assert trainer.global_step == 4
    a, b = _export_state(tmp_path / "straight"), _export_state(tmp_path / "split")
    for key in a:
        assert torch.equal(a[key], b[key]), key

    rows = list(csv.DictReader(open(next((tmp_path / "straight" / "csv").glob("version_*/metrics.csv")))))
    val = [r for r in rows if r.get("val/ppl")]
    assert [int(r["step"]) for r in val][-1] >= 3  # validation after steps 2 and 4
    for r in val:
        ppls = [float(r[f"val/ppl_k{k}"]) for k in range(K)]
        assert all(1.0 <= p < 10 * CARD for p in ppls)
        assert math.exp(sum(math.log(p) for p in ppls) / K) == pytest.approx(float(r["val/ppl"]), rel=1e-4)

    model = MusicLM.from_pretrained(tmp_path / "straight" / "export", load_codec=False)
    assert model.config.card == CARD and model.tokenizer.vocab_size == 40
    for key, value in model.state_dict().items():
        assert torch.equal(value, a[key])


@pytest.mark.slow
def test_train_lm_from_real_shards_with_codec_samples(tiny_codec, tokenizer_path, tmp_path):
    """Audio → `tokenize_manifest` shards → `musiclm train lm` → export that generates with the codec."""
    import json

    from musiclm.audio import save_audio
    from musiclm.cli import main
    from musiclm.data.shards import tokenize_manifest
    from musiclm.training.recipes import train_lm

    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    rows = []
    for i in range(4):
        t = torch.arange(4000) / 8000
        save_audio(tmp_path / f"a{i}.wav", (0.3 * torch.sin(2 * math.pi * 220 * (i + 1) * t))[None], 8000)
        rows.append(
            {
                "id": f"a{i}",
                "path": f"a{i}.wav",
                "duration": 0.5,
                "sample_rate": 8000,
                "channels": 1,
                "piece": f"p{i}",
                "split": "valid" if i == 3 else "train",
                "caption": CAPTIONS[i],
                "fields": {},
                "source": "synth",
            }
        )
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    tokenize_manifest(tmp_path / "m.jsonl", codec_dir, tmp_path / "shards", progress=False)

    cfg = overrides(tokenizer_path, max_steps=2, sample_every=2)
    cfg["lm"].update(card=tiny_codec.card, n_q=2, frame_rate=tiny_codec.frame_rate, sample_rate=8000)
    cfg["data"].update(shards=[], sample_prompts=["calm piano"], sample_seconds=0.02)
    cfg_file = tmp_path / "lm.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    with pytest.raises(MusicLMError, match="data.shards is empty"):
        train_lm(cfg_file, tmp_path / "run0")
    # the CLI names the shards and the codec on the command line
    assert (
        main(
            [
                "train",
                "lm",
                "--config",
                str(cfg_file),
                "--shards",
                str(tmp_path / "shards"),
                "--codec",
                str(codec_dir),
                "--out",
                str(tmp_path / "run"),
                "--threads",
                "1",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["codec"] == str(codec_dir) and saved["data"]["shards"] == [str(tmp_path / "shards")]
    assert (tmp_path / "run" / "export" / "step.txt").read_text().strip() == "2"
    assert list((tmp_path / "run" / "samples" / "step_0000002").glob("prompt0.wav"))
    model = MusicLM.from_pretrained(tmp_path / "run" / "export")  # loads the codec through the relative link
    assert model.codec is not None and model.codec.fingerprint() == tiny_codec.fingerprint()
    wav = model.generate("calm piano", duration=0.01, seed=0)
    assert wav.shape[0] == 1 and wav.shape[-1] == 80


def _one_step_base(tokenizer_path, tmp_path):
    """A one-step LM run in tmp_path/base to start from → (its config file, its exported weights)."""
    from musiclm.training.recipes import train_lm

    cfg_file = tmp_path / "lm.yaml"
    cfg_file.write_text(yaml.safe_dump(overrides(tokenizer_path, max_steps=1, val_every=0, checkpoint_every=0)))
    train_lm(cfg_file, tmp_path / "base")
    return cfg_file, _export_state(tmp_path / "base")


@pytest.mark.slow
def test_init_from_and_train_only_freeze_the_rest(fake_shards, tokenizer_path, tmp_path):
    """Fine-tuning: start from an exported LM, train only the named prefixes; the rest stays bit-identical."""
    from musiclm.training.recipes import train_lm

    cfg_file, base = _one_step_base(tokenizer_path, tmp_path)
    tune = {
        "init_from": str(tmp_path / "base" / "export"),
        "train_only": ["blocks.1.", "norm.", "heads."],
        "trainer": {"max_steps": 2},
    }
    with pytest.raises(MusicLMError, match="matches no parameter"):
        train_lm(cfg_file, tmp_path / "bad", overrides={**tune, "train_only": ["nothing."]})
    train_lm(cfg_file, tmp_path / "tuned", overrides=tune)
    tuned = _export_state(tmp_path / "tuned")
    for key in base:
        same = torch.equal(base[key], tuned[key])
        assert same != key.startswith(("blocks.1.", "norm.", "heads.")), key


@pytest.mark.slow
def test_init_from_takes_the_training_fields_a_recipe_sets_and_keeps_the_rest(fake_shards, tokenizer_path, tmp_path):
    """Continuing a model with token noise: the recipe says how to train (token_noise), the model what it is
    (its width, and the condition dropout no recipe line asked to change); a resume trains the same way."""
    from musiclm.training.recipes import train_lm

    _one_step_base(tokenizer_path, tmp_path)  # condition_dropout 0.3 (LMConfig's default is 0.1)
    bare = overrides(tokenizer_path, max_steps=2, val_every=0, checkpoint_every=1)
    del bare["lm"]
    recipe = tmp_path / "continue.yaml"
    recipe.write_text(yaml.safe_dump(bare))
    start = {"init_from": str(tmp_path / "base" / "export"), "lm": {"token_noise": 0.25, "dim": 999}}
    train_lm(recipe, tmp_path / "noisy", overrides=start)
    for step in (2, 3):
        exported = json.loads((tmp_path / "noisy" / "export" / "config.json").read_text())
        assert (exported["token_noise"], exported["dim"], exported["condition_dropout"]) == (0.25, 32, 0.3)
        saved = yaml.safe_load((tmp_path / "noisy" / "config.yaml").read_text())["lm"]
        assert (saved["token_noise"], saved["dim"], saved["condition_dropout"]) == (0.25, 32, 0.3)
        assert (tmp_path / "noisy" / "export" / "step.txt").read_text().strip() == str(step)
        if step == 2:
            train_lm(None, tmp_path / "noisy", resume=True, overrides={"trainer": {"max_steps": 3}})


def test_reinit_draws_the_named_modules_afresh_and_keeps_the_rest(fake_shards, tokenizer_path, tmp_path):
    """Retraining a part that learned nothing (the text side): those weights start over, the rest carries."""
    from musiclm.training.recipes import train_lm

    cfg_file, base = _one_step_base(tokenizer_path, tmp_path)
    fresh = {
        "init_from": str(tmp_path / "base" / "export"),
        "reinit": ["text_encoder", r"blocks\.\d+\.cross_attn"],
        "train_only": ["nothing."],  # nothing trains: what differs was re-drawn
    }
    with pytest.raises(MusicLMError, match="matches no parameter"):
        train_lm(cfg_file, tmp_path / "r", overrides=fresh)
    with pytest.raises(MusicLMError, match="matches no module"):
        train_lm(cfg_file, tmp_path / "r2", overrides={**fresh, "reinit": ["text"], "train_only": []})
    fresh["train_only"] = ["norm."]  # trains only the final norm; weight decay does not touch it
    fresh["optim"] = {"lr": 1e-9}
    train_lm(cfg_file, tmp_path / "re", overrides=fresh)
    redrawn = _export_state(tmp_path / "re")
    for key in base:
        if key.startswith("norm."):
            continue
        drawn = key.startswith("text_encoder.") or ".cross_attn." in key
        assert torch.equal(base[key], redrawn[key]) != drawn, key


def test_text_embeddings_are_scaled_so_words_outweigh_nothing():
    from musiclm.text.encoder import TextConfig, TrainableTextEncoder

    ids, mask = torch.randint(0, 50, (2, 9)), torch.ones(2, 9, dtype=torch.bool)
    encoders = {}
    for scale in (None, 1.0):
        torch.manual_seed(0)
        encoders[scale] = TrainableTextEncoder(TextConfig(vocab_size=50, dim=64, n_layers=1, embed_scale=scale))
        nn.init.normal_(encoders[scale].embed.weight, std=0.02)  # as MusicLM initialises it
    with torch.no_grad():
        # how much the memory depends on the words: two captions, same positions
        spread = {s: (e(ids, mask)[0] - e(ids, mask)[1]).std().item() for s, e in encoders.items()}
    assert spread[None] > 3 * spread[1.0]  # sqrt(64) = 8x louder words


def test_decay_start_keeps_the_rate_then_anneals():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    cfg = OptimConfig(lr=1.0, schedule="cosine", decay_start=10, min_lr_ratio=0.0)
    sched = lr_scheduler(opt, cfg, 20)
    lrs = []
    for _ in range(21):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs[:11] == [1.0] * 11 and lrs[15] == pytest.approx(0.5) and lrs[20] == pytest.approx(0.0, abs=1e-9)


@pytest.mark.slow
def test_init_from_a_note_model_can_add_the_notes_given_vector(tokenizer_path, tmp_path, monkeypatch):
    """`lm.note_presence: true` with init_from grows the vector (zero, so training starts where the model
    was), trains it, and a resume keeps it."""
    from musiclm.training.recipes import train_lm

    def with_notes(items):
        for item in items:
            T = item.codes.shape[1]
            item.notes = (torch.arange(T)[:, None] % 12 == torch.arange(48)[None]).to(torch.uint8)
            item.chroma = (torch.arange(T) % 12).to(torch.int8)
        return items

    splits = {"train": with_notes(make_items(12, 0)), "valid": with_notes(make_items(5, 1))}
    monkeypatch.setattr(
        token_dataset, "load_token_items", lambda dirs, split, n_q, fp=None, notes=False: splits.get(split, [])
    )
    base_cfg = overrides(tokenizer_path, max_steps=1, val_every=0, checkpoint_every=0)
    base_cfg["lm"]["note_features"] = 48
    cfg_file = tmp_path / "notes.yaml"
    cfg_file.write_text(yaml.safe_dump(base_cfg))
    train_lm(cfg_file, tmp_path / "base")
    grow = {"init_from": str(tmp_path / "base" / "export"), "lm": {"note_presence": True}}
    grow["trainer"] = {"max_steps": 2, "checkpoint_every": 1}
    train_lm(cfg_file, tmp_path / "grown", overrides=grow)
    exported = json.loads((tmp_path / "grown" / "export" / "config.json").read_text())
    assert exported["note_presence"] and exported["note_features"] == 48
    vector = _export_state(tmp_path / "grown")["note_presence"]
    assert vector.shape == (32,) and bool(vector.ne(0).any())  # trained from zero
    train_lm(None, tmp_path / "grown", resume=True, overrides={"trainer": {"max_steps": 3}})
    assert not torch.equal(_export_state(tmp_path / "grown")["note_presence"], vector)
