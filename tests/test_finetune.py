"""`musiclm finetune` end to end: a tiny catalog (a corrupt file, a sidecar caption) → fine-tuned model dir."""

from __future__ import annotations

import csv
import json
import math
import os
import stat

import pytest
import torch
import yaml
from test_lm_model import debug_model_dir

from musiclm.audio import save_audio
from musiclm.cli import main
from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    return debug_model_dir(tmp_path_factory.mktemp("base"), SR)


@pytest.fixture(scope="module")
def note_base_dir(tmp_path_factory):
    """A note-conditioned base (note_features 48), as the shipped LM will be."""
    return debug_model_dir(tmp_path_factory.mktemp("note_base"), SR, note_features=48)


def tune(seconds: float = 2.5, seed: int = 0) -> torch.Tensor:
    """A four-note figure repeated every 0.4 s (20 codec frames): a signal a small LM can learn."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * SR)) / SR
    note = (t / 0.1).long() % 4
    freq = torch.tensor([330.0, 440.0, 550.0, 660.0])[note]
    wav = 0.4 * torch.sin(2 * math.pi * freq * t) * (1 - (t % 0.1) / 0.15)
    return (wav + 0.003 * torch.randn(wav.shape, generator=g))[None]  # [1, N]


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalog")
    for i in range(6):
        folder = root / ("album" if i % 2 else "")
        folder.mkdir(exist_ok=True)
        save_audio(folder / f"track{i}.wav", tune(seed=i), SR)
    (root / "track0.txt").write_text("a bright little music box tune, fast\n")
    (root / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 10)
    return root


@pytest.fixture(scope="module")
def recipe(tmp_path_factory):
    path = tmp_path_factory.mktemp("recipe") / "ft.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "data": {"batch_size": 4, "val_batches": 1},
                "optim": {"lr": 3e-3, "betas": [0.9, 0.95], "warmup_steps": 5, "schedule": "cosine"},
                "trainer": {
                    "max_steps": 40,
                    "checkpoint_every": 10,
                    "log_every": 5,
                    "sample_every": 0,
                    "val_every": 0,
                    "num_threads": 1,
                    "num_workers": 0,
                    "wandb": False,
                    "progress_every": 10,
                },
            }
        )
    )
    return path


@pytest.mark.slow
def test_finetune_end_to_end_then_resume(base_dir, catalog, recipe, tmp_path, capsys):
    from musiclm.finetune import finetune

    out = tmp_path / "mine"
    report = finetune(catalog, out, model=base_dir, config=recipe, train_layers=1, progress=False)

    # the corrupt file is skipped and reported; the sidecar caption is used
    assert [s["path"].endswith("broken.wav") for s in report["skipped"]] == [True]
    assert "broken.wav" in capsys.readouterr().out
    assert report["indexed"] == 6 and report["caption_sources"].get("sidecar") == 1
    assert len(report["heldout_files"]) == 1 and report["train_files"] == 5
    rows = [json.loads(line) for line in (out / "finetune" / "manifest.jsonl").read_text().splitlines()]
    assert {r["id"] for r in rows if r["split"] == "valid"} == set(report["heldout_files"])
    assert next(r["caption"] for r in rows if r["id"] == "track0") == "a bright little music box tune, fast"

    # fine-tuning lowers the held-out perplexity on this catalog
    assert report["steps"] == 40 and report["start_step"] == 0
    assert report["ppl_after"] < 0.7 * report["ppl_before"], report

    # only the last block, the final norm and the heads changed
    base, tuned = MusicLM.from_pretrained(base_dir), MusicLM.from_pretrained(out)
    b, t = base.state_dict(), tuned.state_dict()
    changed = {k for k in b if not torch.equal(b[k], t[k])}
    assert changed and all(k.startswith(("blocks.1.", "norm.", "heads.")) for k in changed), changed
    assert any(k.startswith("blocks.1.") for k in changed)

    # the model directory stands alone: the codec was copied, `generate --model OUT` works
    assert tuned.codec.fingerprint() == base.codec.fingerprint()
    assert (out / "codec" / "config.json").is_file() and tuned.config.codec == "codec"
    wav_path = tmp_path / "gen.wav"
    assert (
        main(
            [
                "generate",
                "a bright music box tune",
                "-o",
                str(wav_path),
                "--duration",
                "0.5",
                "--seed",
                "0",
                "--model",
                str(out),
            ]
        )
        == 0
    )
    assert wav_path.is_file()

    # the same command with more steps resumes every stage instead of restarting
    again = finetune(catalog, out, model=base_dir, config=recipe, steps=50, train_layers=1, progress=False)
    assert again["start_step"] == 40 and again["steps"] == 50 and again["tokenized_now"] == 0
    index_report = json.loads((out / "finetune" / "catalog.jsonl.report.json").read_text())
    assert index_report["reused"] == 6
    assert again["ppl_before"] == pytest.approx(report["ppl_before"])
    metrics = sorted((out / "finetune" / "run" / "csv").glob("version_*/metrics.csv"))
    assert len(metrics) == 2
    steps_logged = [int(r["step"]) for r in csv.DictReader(open(metrics[1])) if r.get("step")]
    assert steps_logged and min(steps_logged) >= 40  # the second launch logged only steps after 40

    # --force starts over (CLI): a fresh run from step 0
    assert (
        main(
            [
                "finetune",
                str(catalog),
                "--out",
                str(out),
                "--model",
                str(base_dir),
                "--config",
                str(recipe),
                "--steps",
                "5",
                "--layers",
                "1",
                "--force",
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert "held-out perplexity" in printed and "broken.wav" in printed
    fresh = json.loads((out / "finetune" / "report.json").read_text())
    assert fresh["start_step"] == 0 and fresh["steps"] == 5 and fresh["tokenized_now"] == 6


def test_refuses_missing_or_empty_catalog_and_foreign_out(base_dir, catalog, tmp_path, capsys):
    from musiclm.finetune import finetune

    with pytest.raises(MusicLMError, match="catalog folder not found"):
        finetune(tmp_path / "nope", tmp_path / "out", model=base_dir, progress=False)
    (tmp_path / "empty").mkdir()
    assert main(["finetune", str(tmp_path / "empty"), "--out", str(tmp_path / "o1"), "--model", str(base_dir)]) == 2
    err = capsys.readouterr().err
    assert "no audio files" in err and len(err.strip().splitlines()) == 1
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"not audio at all")
    with pytest.raises(MusicLMError, match="no usable audio"):
        finetune(tmp_path / "bad", tmp_path / "o2", model=base_dir, progress=False)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "notes.txt").write_text("mine")
    with pytest.raises(MusicLMError, match="--force"):
        finetune(catalog, tmp_path / "taken", model=base_dir, progress=False)
    assert main(["finetune", str(catalog), "--out", str(tmp_path / "o3"), "--model", str(tmp_path / "nomodel")]) == 2
    assert "model directory not found" in capsys.readouterr().err


def test_heldout_perplexity_ignores_padding_and_split_is_by_file(base_dir):
    from musiclm.finetune import choose_heldout, heldout_perplexity
    from musiclm.training.token_dataset import TokenItem

    model = MusicLM.from_pretrained(base_dir, load_codec=False)
    g = torch.Generator().manual_seed(0)
    items = [TokenItem(torch.randint(0, 64, (4, T), generator=g), "calm piano", f"f{T}") for T in (30, 11, 5)]
    batched = heldout_perplexity(model, items, window=24, batch_size=4, progress=False)
    alone = heldout_perplexity(model, items, window=24, batch_size=1, progress=False)
    assert batched["tokens"] == alone["tokens"] == 4 * (30 + 11 + 5)  # every real code scored once
    assert batched["ppl_k"] == pytest.approx(alone["ppl_k"], rel=1e-5)
    assert 1 < batched["ppl"] < 10 * 64

    ids = [f"album/track{i}" for i in range(20)]
    held = choose_heldout(ids, 0.1)
    assert len(held) == 2 and held == choose_heldout(list(reversed(ids)), 0.1)  # order-free
    assert choose_heldout(["a", "b"], 0.9) in (["a"], ["b"])  # never every file
    with pytest.raises(MusicLMError, match="at least 2"):
        choose_heldout(["a"], 0.1)


def test_out_that_cannot_be_a_folder_is_refused_in_one_line(base_dir, catalog, tmp_path, capsys):
    a_file = tmp_path / "model.bin"
    a_file.write_bytes(b"mine")
    for out, force in ((a_file, []), (a_file, ["--force"]), (a_file / "sub", [])):
        assert main(["finetune", str(catalog), "--out", str(out), "--model", str(base_dir), *force]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("musiclm: error:") and "\n" not in err and "not a folder" in err, err
    assert a_file.read_bytes() == b"mine"  # --force never deletes a file that is not a fine-tune folder


def test_unusable_catalog_leaves_no_output_folder_behind(base_dir, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"not audio at all")
    mine = tmp_path / "mine"
    mine.mkdir()  # an empty folder the user made: it stays, empty
    for catalog, out in (
        ("empty", tmp_path / "o1"),
        ("bad", tmp_path / "o2"),
        ("bad", tmp_path / "new" / "deeper" / "o3"),
        ("bad", mine),
    ):
        assert main(["finetune", str(tmp_path / catalog), "--out", str(out), "--model", str(base_dir)]) == 2
        assert "error" in capsys.readouterr().err
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists() and not (tmp_path / "new").exists()
    assert mine.is_dir() and not list(mine.iterdir())


@pytest.mark.slow
def test_interrupted_finetune_exits_130_and_resumes(base_dir, catalog, recipe, tmp_path, capsys, monkeypatch):
    """Ctrl-C during training: the Checkpointer saves and stops; the command says so and exits 130 (not 0),
    with the model so far in OUT; the same command then continues from the checkpoint."""
    import signal

    from musiclm.training.lm_module import LMModule

    training_step = LMModule.training_step

    def interrupted_at_step_3(self, batch, batch_idx):
        if self.global_step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return training_step(self, batch, batch_idx)

    monkeypatch.setattr(LMModule, "training_step", interrupted_at_step_3)
    out = tmp_path / "mine"
    args = ["finetune", str(catalog), "--out", str(out), "--model", str(base_dir), "--config", str(recipe)]
    assert main([*args, "--steps", "8", "--layers", "1"]) == 130
    captured = capsys.readouterr()
    assert "interrupted at step 4 of 8" in captured.err and "training stopped at step 4" in captured.out
    assert (out / "finetune" / "run" / "checkpoints" / "last.ckpt").is_file()
    assert MusicLM.from_pretrained(out).codec is not None  # the model so far
    monkeypatch.setattr(LMModule, "training_step", training_step)
    assert main([*args, "--steps", "8", "--layers", "1"]) == 0
    report = json.loads((out / "finetune" / "report.json").read_text())
    assert report["start_step"] == 4 and report["steps"] == 8 and not report["interrupted"]


def test_written_files_respect_the_umask(base_dir, catalog, recipe, tmp_path):
    from musiclm.finetune import finetune

    previous = os.umask(0o002)
    try:
        finetune(catalog, tmp_path / "out", model=base_dir, config=recipe, steps=1, train_layers=0, progress=False)
    finally:
        os.umask(previous)
    out = tmp_path / "out"
    for path in (
        out / "model.safetensors",
        out / "config.json",
        out / "codec" / "model.safetensors",
        out / "finetune" / "catalog.jsonl",
        out / "finetune" / "manifest.jsonl",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == 0o664, path


@pytest.mark.slow
def test_note_conditioned_base_finetunes_on_the_chroma_path(note_base_dir, base_dir, catalog, recipe, tmp_path, capsys):
    """An audio-only catalog fine-tunes a note-conditioned base on its chroma (the shards hold no MIDI); the
    result keeps note_features and plays with notes (--melody) and without."""
    from musiclm.finetune import finetune
    from musiclm.lm import GenerationOptions
    from musiclm.lm.generation import output_length
    from musiclm.notes.condition import melody_features
    from musiclm.training.token_dataset import load_token_items

    out = tmp_path / "mine"
    report = finetune(catalog, out, model=note_base_dir, config=recipe, steps=6, train_layers=1, progress=False)
    assert report["notes"] == "chroma" and report["steps"] == 6 and not report["interrupted"]
    assert "chromagram" in capsys.readouterr().out
    assert math.isfinite(report["ppl_before"]) and math.isfinite(report["ppl_after"])
    items = load_token_items([str(out / "finetune" / "shards")], "train", 4, notes=True)
    assert items and all(it.notes is None and it.chroma is not None for it in items)  # chroma, no MIDI

    tuned = MusicLM.from_pretrained(out)
    assert tuned.config.note_features == 48 and tuned.codec is not None
    options = GenerationOptions(duration=0.5, seed=0)
    frames, n_samples = output_length(tuned.codec, options.duration)
    features = melody_features(catalog / "track0.wav", frames, tuned.codec.frame_rate)  # [T, 48], chroma view
    plain = tuned.generate(["a bright music box tune"], options)
    heard = tuned.generate(["a bright music box tune"], options, notes=features[None])
    assert plain.shape == heard.shape == (1, 1, n_samples) and not torch.equal(plain, heard)
    wav_path = tmp_path / "melody.wav"
    args = ["generate", "a bright music box tune", "-o", str(wav_path), "--duration", "0.5", "--seed", "0"]
    assert main([*args, "--model", str(out), "--melody", str(catalog / "track0.wav")]) == 0
    assert wav_path.is_file()

    # a text-only base still fine-tunes without notes
    plain_out = tmp_path / "plain"
    text = finetune(catalog, plain_out, model=base_dir, config=recipe, steps=2, train_layers=0, progress=False)
    assert text["notes"] is None and MusicLM.from_pretrained(plain_out).config.note_features == 0
    assert "chromagram" not in capsys.readouterr().out


def test_heldout_perplexity_of_a_note_model_hears_the_chroma(note_base_dir):
    from dataclasses import replace

    from musiclm.finetune import heldout_perplexity
    from musiclm.training.token_dataset import TokenItem

    model = MusicLM.from_pretrained(note_base_dir, load_codec=False)
    g = torch.Generator().manual_seed(0)
    items = [
        TokenItem(torch.randint(0, 64, (4, T), generator=g), "calm piano", f"f{T}", chroma=pitch)
        for T in (30, 11)
        for pitch in [torch.randint(-1, 12, (T,), generator=g).to(torch.int8)]
    ]
    heard = heldout_perplexity(model, items, window=24, batch_size=4, progress=False)
    alone = heldout_perplexity(model, items, window=24, batch_size=1, progress=False)
    assert heard["ppl_k"] == pytest.approx(alone["ppl_k"], rel=1e-5)  # padding notes are zeros, never heard
    silent = [replace(it, chroma=torch.full_like(it.chroma, -1)) for it in items]
    without = [replace(it, chroma=None) for it in items]
    deaf = heldout_perplexity(model, without, window=24, batch_size=4, progress=False)
    assert heldout_perplexity(model, silent, window=24, progress=False)["ppl_k"] == pytest.approx(deaf["ppl_k"])
    assert heard["tokens"] == deaf["tokens"] and heard["ppl"] != pytest.approx(deaf["ppl"], rel=1e-4)
