"""Codec training: deterministic data, losses, balancer, exact resume, signals, DDP, CLI errors."""

from __future__ import annotations

import csv
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from safetensors.torch import load_file

from musiclm.audio import save_audio
from musiclm.dsp import mel_filterbank
from musiclm.errors import MusicLMError
from musiclm.training.audio_dataset import CropBatches, read_manifests
from musiclm.training.balancer import Balancer
from musiclm.training.losses import MultiScaleMelLoss, MultiScaleSTFTLoss

ROOT = Path(__file__).resolve().parent.parent
DEBUG = ROOT / "configs" / "codec" / "debug.yaml"


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """Six 1-second clips (tones + noise) at 8 kHz, five for training, one held out; returns the manifest."""
    folder = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []
    for i in range(6):
        t = np.arange(8000) / 8000
        wav = 0.3 * np.sin(2 * np.pi * (110 * (i + 1)) * t) + 0.05 * rng.standard_normal(8000)
        save_audio(folder / "audio" / f"clip{i}.wav", torch.tensor(wav, dtype=torch.float32)[None], 8000)
        rows.append({"path": f"audio/clip{i}.wav", "duration": 1.0, "split": "test" if i == 5 else "train"})
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"path": "partial')
    return manifest


def test_manifest_rows_and_missing_manifest(corpus, tmp_path):
    with pytest.warns(UserWarning, match="not found"):
        files = read_manifests([corpus, tmp_path / "missing.jsonl"], "train")
    assert len(files) == 5 and all(Path(f.path).is_absolute() and Path(f.path).exists() for f in files)
    assert len(read_manifests([corpus], "test")) == 1


def test_batches_are_a_function_of_seed_and_step(corpus):
    files = read_manifests([corpus], "train")
    make = lambda seed, rank=0: CropBatches(files, 8000, 1, 0.25, 3, seed, rank, (-6.0, 0.0))  # noqa: E731
    a, b = make(1), make(1)
    assert torch.equal(a[5], b[5]) and a[5].shape == (3, 1, 2000)
    assert not torch.equal(a[5], a[6])
    assert not torch.equal(a[5], make(2)[5])
    assert not torch.equal(a[5], make(1, rank=1)[5])
    assert float(a[5].abs().max()) <= 0.99 + 1e-6


def test_spectral_losses():
    fb = mel_filterbank(16000, 512, 40)
    assert fb.shape == (40, 257) and bool((fb >= 0).all()) and bool((fb.sum(1) > 0).all())
    x = torch.randn(2, 1, 4000) * 0.1
    y = x + 0.05 * torch.randn_like(x)
    for loss in (MultiScaleMelLoss(16000, (512, 256), 40), MultiScaleSTFTLoss((512, 256))):
        assert float(loss(x, x)) < 1e-6
        assert float(loss(y, x)) > float(loss(x + 0.001 * torch.randn_like(x), x)) > 0


def test_spectral_convergence_prefers_the_note_over_the_noise_floor():
    """A 1 kHz sine over a faint floor: an output that drops the sine but matches the floor exactly, against
    one that keeps the sine over a floor 20 dB too loud. Log-magnitude L1 (every bin alike) prefers dropping
    the note; spectral convergence (linear magnitudes) prefers keeping it."""
    from musiclm.training.losses import SpectralConvergenceLoss

    torch.manual_seed(0)
    t = torch.arange(16000) / 16000
    sine, floor = 0.3 * torch.sin(2 * torch.pi * 1000 * t)[None, None], 1e-3 * torch.randn(1, 1, 16000)
    target, dropped, noisy = sine + floor, floor.clone(), sine + 10 * floor
    convergence = SpectralConvergenceLoss((512, 256))
    log_only = MultiScaleSTFTLoss((512, 256))  # its log half dominates: compare with the convergence removed
    log_l1 = (
        float(log_only(dropped, target) - convergence(dropped, target)),
        float(log_only(noisy, target) - convergence(noisy, target)),
    )
    assert log_l1[0] < log_l1[1]
    assert float(convergence(noisy, target)) < 0.2 < 0.9 < float(convergence(dropped, target))
    assert float(convergence(target, target)) < 1e-6


def _notes(attack_s: float, sr: int = 16000, seconds: float = 1.0) -> torch.Tensor:
    """Four 440 Hz notes, 0.25 s apart, each rising over attack_s and decaying: [1, 1, N]."""
    t = torch.arange(int(sr * seconds)) / sr
    local = torch.remainder(t, 0.25)
    envelope = torch.clamp(local / max(attack_s, 1e-4), max=1.0) * torch.exp(-8 * local)
    return (0.5 * envelope * torch.sin(2 * torch.pi * 440 * t))[None, None]


def test_onset_flux_loss_hears_smeared_attacks_not_loudness():
    from musiclm.training.losses import OnsetFluxLoss

    loss = OnsetFluxLoss(16000, (512, 256))
    sharp = _notes(0.002)
    assert float(loss(sharp, sharp)) < 1e-6
    smeared, louder = _notes(0.03), 2.0 * sharp  # the same notes with 30 ms attacks; the notes 6 dB up
    assert float(loss(louder, sharp)) < 1e-4 < 0.2 < float(loss(smeared, sharp))
    output = smeared.clone().requires_grad_(True)
    loss(output, sharp).backward()
    assert float(output.grad.abs().sum()) > 0


def test_spectral_delta_loss_hears_a_fluttering_partial_and_one_that_runs_on_not_loudness():
    from musiclm.training.losses import SpectralDeltaLoss

    sr = 16000
    t = torch.arange(sr) / sr
    note = torch.where(t < 0.5, 1.0, 0.0) * torch.sin(2 * torch.pi * 440 * t)  # A4 for half a second
    partial = torch.where(t < 0.5, 0.3, 0.0) * torch.sin(2 * torch.pi * 880 * t)  # its 2nd partial
    ref = (0.5 * (note + partial))[None, None]
    loss = SpectralDeltaLoss((1024, 512))
    assert float(loss(ref, ref)) < 1e-6
    flutter = ref * (1 + 0.5 * torch.sin(2 * torch.pi * 12 * t))  # the held note heard struck again
    runs_on = (0.5 * (note + 0.3 * torch.sin(2 * torch.pi * 880 * t)))[None, None]  # the partial outlives it
    louder = 2.0 * ref
    assert float(loss(louder, ref)) < 1e-4 < 0.1 < min(float(loss(flutter, ref)), float(loss(runs_on, ref)))
    output = flutter.clone().requires_grad_(True)
    loss(output, ref).backward()
    assert float(output.grad.abs().sum()) > 0


def test_balancer_plain_is_weighted_sum_and_balanced_is_scale_free():
    out = torch.randn(4, 1, 100, requires_grad=True)
    target = torch.randn(4, 1, 100)
    losses = lambda k: {"a": k * (out - target).abs().mean(), "b": (out - target).pow(2).mean()}  # noqa: E731
    plain, _ = Balancer({"a": 2.0, "b": 0.5}, balance=False)(losses(1.0), out)
    (expected,) = torch.autograd.grad(2.0 * losses(1.0)["a"] + 0.5 * losses(1.0)["b"], out)
    torch.testing.assert_close(plain, expected)
    g1, _ = Balancer({"a": 1.0, "b": 1.0})(losses(1.0), out)
    g2, _ = Balancer({"a": 1.0, "b": 1.0})(losses(1000.0), out)  # a loss 1000x larger: same gradient
    torch.testing.assert_close(g1, g2)


def _weights(run: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run / "export" / "model.safetensors"))


@pytest.mark.slow
def test_resume_is_exact(corpus, tmp_path):
    """k steps, stop, resume to n == n steps straight: same weights, EMA codebooks and optimizer state
    (with the discriminator joining at step 2 and the balancer on, so their state must resume too)."""
    loss = {"adversarial": True, "balancer": True}
    from musiclm.training.recipes import train_codec

    def run(path, steps, resume=False):
        overrides = {"data": {"manifests": [str(corpus)]}, "trainer": {"max_steps": steps}, "loss": loss}
        if resume:
            overrides.pop("data"), overrides.pop("loss")
        return train_codec(None if resume else DEBUG, path, resume=resume, overrides=overrides)

    run(tmp_path / "straight", 4)
    run(tmp_path / "split", 3)
    assert (tmp_path / "split" / "export" / "step.txt").read_text().strip() == "3"
    trainer = run(tmp_path / "split", 4, resume=True)
    assert trainer.global_step == 4
    a, b = _weights(tmp_path / "straight"), _weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    opt_a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
    opt_b = torch.load(tmp_path / "split" / "checkpoints" / "last.ckpt", weights_only=False)["optimizer_states"]
    for sa, sb in zip(opt_a[0]["state"].values(), opt_b[0]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"])
    # the validation at step 2 (debug recipe: sample_every 2) scored held tones beside the clips
    rows = list(csv.DictReader(next((tmp_path / "straight" / "csv").rglob("metrics.csv")).open()))
    lost = [float(r["val/sines_lost_1.5kbps"]) for r in rows if r.get("val/sines_lost_1.5kbps")]
    assert lost and all(0.0 <= v <= 1.0 for v in lost)
    # with the [eval] extra, notes are scored by precision and recall beside F1
    scored = [r for r in rows if r.get("val/note_f1_1.5kbps")]
    assert scored or importlib.util.find_spec("onnxruntime") is None
    for r in scored:
        assert all(0.0 <= float(r[f"val/note_{k}_1.5kbps"]) <= 1.0 for k in ("f1", "precision", "recall"))


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "musiclm.cli", *args]


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_then_resume_continues(corpus, tmp_path):
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    cfg_override = tmp_path / "cfg.yaml"
    data = yaml.safe_load(DEBUG.read_text())
    data["data"]["manifests"] = [str(corpus)]
    data["trainer"].update(max_steps=100_000, checkpoint_every=0, sample_every=0)
    cfg_override.write_text(yaml.safe_dump(data))
    proc = subprocess.Popen(
        _cli("train", "codec", "--config", str(cfg_override), "--out", str(run)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 60
    while time.time() < deadline and not list((run / "csv").glob("version_*/metrics.csv")):
        time.sleep(0.2)  # CSV rows appear once steps run (log_every 1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert "received SIGTERM" in out
    step = int((run / "export" / "step.txt").read_text())
    assert step > 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert ckpt["global_step"] == step
    done = subprocess.run(
        _cli("train", "codec", "--out", str(run), "--resume", "--max-steps", str(step + 2)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert int((run / "export" / "step.txt").read_text()) == step + 2


def test_cli_refuses_to_overwrite_a_run_and_needs_a_run_to_resume(corpus, tmp_path):
    from musiclm.training.recipes import train_codec

    run = tmp_path / "run"
    with pytest.raises(MusicLMError, match="not found"):
        train_codec(None, run, resume=True)
    train_codec(DEBUG, run, overrides={"data": {"manifests": [str(corpus)]}, "trainer": {"max_steps": 1}})
    with pytest.raises(MusicLMError, match="--resume"):
        train_codec(DEBUG, run, overrides={"data": {"manifests": [str(corpus)]}})
    with pytest.raises(MusicLMError, match="unknown key"):
        train_codec(DEBUG, tmp_path / "other", overrides={"data": {"manifests": [str(corpus)], "bogus": 1}})


@pytest.mark.slow
def test_discriminator_warmup_trains_only_the_discriminator(corpus, tmp_path):
    """loss.disc_warmup_steps: before adv_warmup_steps the discriminator learns from the generator's output
    while the generator hears nothing, so the codec comes out exactly as without it and the
    discriminator does not."""
    from musiclm.training.recipes import train_codec

    def run(path, disc_warmup):
        loss = {"adversarial": True, "adv_warmup_steps": 2, "disc_warmup_steps": disc_warmup}
        overrides = {
            "data": {"manifests": [str(corpus)]},
            "trainer": {"max_steps": 2, "sample_every": 0},
            "loss": loss,
        }
        train_codec(DEBUG, path, overrides=overrides)
        state = torch.load(path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        return {k: v for k, v in state.items() if k.startswith("discriminator.")}, _weights(path)

    disc_idle, codec_idle = run(tmp_path / "idle", 0)
    disc_warm, codec_warm = run(tmp_path / "warm", 2)
    for key in codec_idle:
        assert torch.equal(codec_idle[key], codec_warm[key]), key
    changed = [k for k in disc_idle if not torch.equal(disc_idle[k], disc_warm[k])]
    assert len(changed) > len(disc_idle) // 2


@pytest.mark.slow
def test_max_minutes_stops_early_and_exports(corpus, tmp_path):
    """trainer.max_minutes ends a run on wall time, well before max_steps, with the checkpoint and export of
    the step it reached (how recipes are compared at equal cost)."""
    from musiclm.training.recipes import train_codec

    overrides = {
        "data": {"manifests": [str(corpus)]},
        "trainer": {"max_steps": 100_000, "max_minutes": 0.05, "sample_every": 0, "checkpoint_every": 0},
    }
    trainer = train_codec(DEBUG, tmp_path / "run", overrides=overrides)
    assert 0 < trainer.global_step < 100_000
    assert int((tmp_path / "run" / "export" / "step.txt").read_text()) == trainer.global_step
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


@pytest.mark.slow
def test_ddp_two_processes_on_cpu(corpus, tmp_path):
    """Lightning DDP (gloo) with 2 CPU processes, launched as a user would (`--devices 2 --strategy ddp`)."""
    data = yaml.safe_load(DEBUG.read_text())
    data["data"]["manifests"] = [str(corpus)]
    data["loss"]["adversarial"] = True  # the discriminator joins after 2 steps: unused parameters before
    data["trainer"].update(max_steps=3, checkpoint_every=0, sample_every=0, accelerator="cpu")
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(data))
    run = tmp_path / "run"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    done = subprocess.run(
        _cli("train", "codec", "--config", str(config), "--out", str(run), "--devices", "2", "--strategy", "ddp"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert "GLOBAL_RANK: 1" in done.stdout + done.stderr
    assert int((run / "export" / "step.txt").read_text()) == 3
    assert _weights(run)


@pytest.mark.slow
def test_init_from_an_exported_codec(corpus, tmp_path):
    """A later session continues from a shipped codec directory (weights + EMA codebooks)."""
    from musiclm.codec import Codec
    from musiclm.training.codec_module import build_codec_module
    from musiclm.training.config import CodecTrainConfig, load_train_config

    over = {"data": {"manifests": [str(corpus)]}}
    config = load_train_config(CodecTrainConfig, DEBUG, over)
    torch.manual_seed(3)
    source = Codec(config.codec)
    source.quantizer.layers[0].inited.fill_(True)
    source.save_pretrained(tmp_path / "shipped")
    config = load_train_config(CodecTrainConfig, DEBUG, {**over, "init_from": str(tmp_path / "shipped")})
    (tmp_path / "run").mkdir()
    module = build_codec_module(config, tmp_path / "run", reuse_files=False)
    for key, value in source.state_dict().items():
        if not key.endswith("embed_avg"):  # not saved; rebuilt from embed x cluster_size on load
            assert torch.equal(module.codec.state_dict()[key], value), key
    bad = load_train_config(
        CodecTrainConfig, DEBUG, {**over, "init_from": str(tmp_path / "shipped"), "codec": {"card": 32}}
    )
    (tmp_path / "run2").mkdir()
    with pytest.raises(MusicLMError, match="differs in \\['card'\\]"):
        build_codec_module(bad, tmp_path / "run2", reuse_files=False)
    # Settings no weight depends on may change on the way (a larger dead-code threshold here).
    retuned = load_train_config(
        CodecTrainConfig, DEBUG, {**over, "init_from": str(tmp_path / "shipped"), "codec": {"dead_code_threshold": 5.0}}
    )
    assert retuned.codec.dead_code_threshold != source.config.dead_code_threshold
    (tmp_path / "run3").mkdir()
    module = build_codec_module(retuned, tmp_path / "run3", reuse_files=False)
    assert module.codec.config.dead_code_threshold == 5.0
    for key, value in source.state_dict().items():
        if not key.endswith("embed_avg"):
            assert torch.equal(module.codec.state_dict()[key], value), key


def test_cli_set_overrides_fields_and_rejects_unknown_ones(corpus, tmp_path, capsys):
    from musiclm.cli import main

    base = ["train", "codec", "--config", str(DEBUG), "--set", f"data.manifests=[{corpus}]", "--threads", "1"]
    assert main([*base, "--out", str(tmp_path / "bad"), "--set", "loss.bogus=1"]) == 2
    assert "unknown key" in capsys.readouterr().err
    assert (
        main(
            [
                *base,
                "--out",
                str(tmp_path / "run"),
                "--max-steps",
                "1",
                "--set",
                "optim.lr=1e-4",
                "--set",
                "trainer.sample_every=0",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optim"]["lr"] == 1e-4 and saved["data"]["manifests"] == [str(corpus)]
    assert (
        main(
            [
                "train",
                "codec",
                "--out",
                str(tmp_path / "run"),
                "--resume",
                "--max-steps",
                "2",
                "--set",
                "optim.schedule=cosine",
                "--set",
                "optim.decay_start=1",
            ]
        )
        == 0
    )
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["optim"]["schedule"] == "cosine" and saved["optim"]["lr"] == 1e-4
    assert (tmp_path / "run" / "export" / "step.txt").read_text().strip() == "2"


def _warmed_module(corpus, tmp_path, **flags):
    """A codec module built from DEBUG with `flags`, its codebooks initialised as a trained codec's would be."""
    from musiclm.training.codec_module import build_codec_module
    from musiclm.training.config import CodecTrainConfig, load_train_config

    config = load_train_config(CodecTrainConfig, DEBUG, {"data": {"manifests": [str(corpus)]}, **flags})
    (tmp_path / "run").mkdir()
    module = build_codec_module(config, tmp_path / "run", reuse_files=False)
    module.codec.train()
    module.codec(torch.randn(4, module.codec.channels, 4000) * 0.3)  # k-means init + EMA
    return module, module.codec


def _train_three_steps(module, excluded_from, in_eval: list, with_commit: bool) -> None:
    """Three optimizer steps with the `in_eval` submodules in eval mode, as training_step leaves them; the
    optimizer must hold none of `excluded_from`'s parameters."""
    codec = module.codec
    optimizer = module.configure_optimizers()["optimizer"]
    excluded = {id(p) for p in excluded_from.parameters()}
    assert not any(id(p) in excluded for group in optimizer.param_groups for p in group["params"])
    for _ in range(3):
        codec.train()
        for part in in_eval:
            part.eval()
        recon, q = codec(torch.randn(4, codec.channels, 4000) * 0.3)
        loss = recon.abs().mean() + (q.commit_loss if with_commit else 0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def _copy(module) -> dict:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_freeze_encoder_keeps_codes_and_trains_the_decoder(corpus, tmp_path):
    """Decoder-only training: the codes (encoder + codebooks) stay bit-identical, the decoder moves."""
    module, codec = _warmed_module(corpus, tmp_path, freeze_encoder=True)
    probe = torch.randn(1, codec.channels, 4000) * 0.3
    codes_before = codec.eval().encode(probe)
    decoder_before = _copy(codec.decoder)
    _train_three_steps(module, codec.encoder, [codec.encoder, codec.quantizer], with_commit=False)
    assert torch.equal(codec.eval().encode(probe), codes_before)
    assert any(not torch.equal(v, codec.decoder.state_dict()[k]) for k, v in decoder_before.items())


def test_freeze_decoder_keeps_what_each_code_sounds_like_and_trains_the_encoder(corpus, tmp_path):
    """Encoder-only training: the decoder and the codebooks stay bit-identical (each code keeps its sound),
    the encoder moves; a config that freezes everything, or the decoder without the codebooks, is one
    clear error."""
    from musiclm.errors import MusicLMError
    from musiclm.training.codec_module import build_codec_module
    from musiclm.training.config import CodecTrainConfig, load_train_config

    module, codec = _warmed_module(corpus, tmp_path, freeze_decoder=True, freeze_codebooks=True)
    decoder_before, quantizer_before, encoder_before = (
        _copy(m) for m in (codec.decoder, codec.quantizer, codec.encoder)
    )
    _train_three_steps(module, codec.decoder, [codec.quantizer], with_commit=True)
    for before, now in ((decoder_before, codec.decoder), (quantizer_before, codec.quantizer)):
        assert all(torch.equal(v, now.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, codec.encoder.state_dict()[k]) for k, v in encoder_before.items())
    base = {"data": {"manifests": [str(corpus)]}}
    for bad in ({"freeze_decoder": True, "freeze_encoder": True, "freeze_codebooks": True}, {"freeze_decoder": True}):
        config = load_train_config(CodecTrainConfig, DEBUG, {**base, **bad})
        with pytest.raises(MusicLMError, match="freeze"):
            build_codec_module(config, tmp_path / "run", reuse_files=False)


@pytest.mark.parametrize("compress", [0.3, 1.0])
def test_the_discriminator_learns_a_quiet_noise_floor_only_on_compressed_spectra(compress):
    """A noise floor 24 dB under a tone at the corpus's level (about -24 dB RMS): on compressed spectra the
    discriminator tells it within 30 steps; on the raw normalized STFT (EnCodec's input) its hinge loss stays
    at chance (2.0), as it did for 400 steps of the recipe comparison."""
    from musiclm.training.discriminator import MultiScaleSTFTDiscriminator
    from musiclm.training.losses import discriminator_loss

    torch.manual_seed(0)
    disc = MultiScaleSTFTDiscriminator((512, 128), 1, 8, compress=compress)
    opt = torch.optim.Adam(disc.parameters(), lr=1e-3, betas=(0.5, 0.9))
    t = torch.arange(4000) / 8000
    for _ in range(30):
        real = 0.08 * torch.sin(2 * torch.pi * (200 + 100 * torch.rand(8, 1, 1)) * t)
        fake = real + 0.005 * torch.randn(8, 1, 4000)
        loss = discriminator_loss(disc(real)[0], disc(fake)[0])
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert (float(loss) < 1.0) == (compress < 1.0), float(loss)


def test_bf16_discriminator_matches_fp32_and_still_learns():
    """loss.disc_bf16: the same weights under bf16 autocast give fp32 logits and features close to the fp32
    pass (bf16 keeps ~3 significant digits), and its gradients point where the fp32 ones do."""
    from musiclm.training.discriminator import MultiScaleSTFTDiscriminator
    from musiclm.training.losses import discriminator_loss

    torch.manual_seed(0)
    fp32 = MultiScaleSTFTDiscriminator((512, 128), 1, 8)
    bf16 = MultiScaleSTFTDiscriminator((512, 128), 1, 8, bf16=True)
    bf16.load_state_dict(fp32.state_dict())
    wav = 0.1 * torch.randn(2, 1, 4000)
    (logits32, feats32), (logits16, feats16) = fp32(wav), bf16(wav)
    assert not torch.equal(logits32[0], logits16[0])  # the convolutions did run in bf16
    for a, b in zip([*logits32, *sum(feats32, [])], [*logits16, *sum(feats16, [])], strict=True):
        assert b.dtype == torch.float32
        assert float((a - b).abs().max()) <= 0.05 * float(a.abs().max()) + 1e-3
    for disc in (fp32, bf16):
        discriminator_loss(disc(wav)[0], disc(0.5 * wav)[0]).backward()
    grads32 = torch.cat([p.grad.flatten() for p in fp32.parameters()])
    grads16 = torch.cat([p.grad.flatten() for p in bf16.parameters()])  # a None grad would raise here
    assert float(torch.nn.functional.cosine_similarity(grads32, grads16, dim=0)) > 0.95


def test_init_from_adds_magnitude_input_and_frozen_codebooks_stay_put(corpus, tmp_path):
    """A frame codec fine-tuned with magnitude input and `freeze_codebooks`: it starts from the codec it came
    from, its encoder (magnitude channels too) and decoder train, and every codebook vector stays put."""
    from musiclm.cli import main
    from musiclm.codec import Codec
    from musiclm.training.config import CodecTrainConfig, load_train_config

    frame = {"dimension": 16, "hop_length": 8, "width": 16, "encoder_layers": 2, "decoder_layers": 2}
    over = {"data": {"manifests": [str(corpus)]}, "codec": {"backbone": "frame", "frame": frame}}
    torch.manual_seed(0)
    source = Codec(load_train_config(CodecTrainConfig, DEBUG, over).codec)
    source.train()(0.3 * torch.randn(4, 1, 800))  # k-means init: codebooks a trained codec would have
    source.eval().save_pretrained(tmp_path / "shipped")
    source = Codec.from_pretrained(tmp_path / "shipped")
    args = ["train", "codec", "--config", str(DEBUG), "--out", str(tmp_path / "run"), "--threads", "1"]
    args += ["--init-from", str(tmp_path / "shipped"), "--max-steps", "2", "--set", "freeze_codebooks=true"]
    args += ["--set", f"data.manifests=[{corpus}]", "--set", "trainer.sample_every=0", "--set", "codec.backbone=frame"]
    args += ["--set", "codec.frame={" + ", ".join(f"{k}: {v}" for k, v in frame.items()) + ", magnitude_input: true}"]
    assert main(args) == 0
    tuned = Codec.from_pretrained(tmp_path / "run" / "export")
    assert tuned.config.frame.magnitude_input
    for old, new in zip(source.quantizer.layers, tuned.quantizer.layers, strict=True):
        assert torch.equal(old.embed, new.embed)
    assert not torch.equal(tuned.decoder.net.embed.weight, source.decoder.net.embed.weight)
    assert tuned.encoder.net.embed.weight[:, 2 * tuned.encoder.bins :].abs().sum() > 0  # magnitude channels learn
    assert tuned.fingerprint() != source.fingerprint()


def test_tone_melodies_mixed_into_crops_are_deterministic_and_reach_high_notes(corpus):
    from musiclm.training.tone_melody import melody

    files = read_manifests([corpus], "train")
    plain = CropBatches(files, 8000, 1, 0.5, 16, seed=1)
    mixed = CropBatches(files, 8000, 1, 0.5, 16, seed=1, tone_melody_share=1.0)
    again = CropBatches(files, 8000, 1, 0.5, 16, seed=1, tone_melody_share=1.0)
    assert torch.equal(mixed[3], again[3]) and not torch.equal(mixed[3], plain[3])
    assert float(mixed[3].abs().max()) <= 0.99 + 1e-6
    # The lines cover the range a melody uses: strongest partials from below C4 to above C6 across draws.
    peaks = []
    for seed in range(40):
        line = melody(np.random.default_rng(seed), 24000, 24000)
        spectrum = np.abs(np.fft.rfft(line[:2000] * np.hanning(2000)))
        peaks.append(np.argmax(spectrum) * 24000 / 2000)
    assert min(peaks) < 262 and max(peaks) > 1047


def _grown_from_a_trained_frame_codec(corpus, tmp_path, **grown):
    """A small frame codec, trained one step and saved as tmp_path/shipped, and the codec a run started from it
    with `init_from` builds when its frame config changes by `grown` (as the source was loaded, in eval mode)."""
    from musiclm.codec import Codec
    from musiclm.training.codec_module import build_codec_module
    from musiclm.training.config import CodecTrainConfig, load_train_config

    frame = {"dimension": 16, "hop_length": 8, "width": 16, "encoder_layers": 2, "decoder_layers": 2}
    over = {"data": {"manifests": [str(corpus)]}, "codec": {"backbone": "frame", "frame": frame}}
    torch.manual_seed(0)
    source = Codec(load_train_config(CodecTrainConfig, DEBUG, over).codec)
    source.train()(0.3 * torch.randn(4, 1, 800))
    source.eval().save_pretrained(tmp_path / "shipped")
    shipped = str(tmp_path / "shipped")
    config = {**over, "codec": {"backbone": "frame", "frame": {**frame, **grown}}, "init_from": shipped}
    (tmp_path / "run").mkdir()
    run = build_codec_module(load_train_config(CodecTrainConfig, DEBUG, config), tmp_path / "run", reuse_files=False)
    return Codec.from_pretrained(tmp_path / "shipped"), run.codec.eval()


def test_init_from_adds_a_head_mlp_that_starts_as_the_plain_decoder(corpus, tmp_path):
    """`frame.head_hidden` on a codec that had none: the new head MLP starts at zero output, so the decoder
    sounds exactly as before until it trains; every other weight is the source's."""
    source, codec = _grown_from_a_trained_frame_codec(corpus, tmp_path, head_hidden=32)
    assert any(".proj_mlp." in k for k in codec.state_dict()) and codec.config.frame.head_hidden == 32
    for key, value in source.state_dict().items():
        if not key.endswith("embed_avg"):
            assert torch.equal(codec.state_dict()[key], value), key
    x = 0.3 * torch.randn(1, 1, 800)
    with torch.no_grad():
        codes = source.encode(x)
        torch.testing.assert_close(codec.decode(codes), source.decode(codes))
    loss = codec.decoder(codec.quantizer.decode(codes)).pow(2).mean()
    loss.backward()
    assert float(codec.decoder.net.proj_mlp[2].weight.grad.abs().sum()) > 0  # and it does train


def test_init_from_adds_decoder_blocks_that_start_as_the_identity(corpus, tmp_path):
    """More `frame.decoder_layers` than the source had: the new blocks come last with zero layer scale, so the
    decoder sounds exactly as before, and their weights train."""
    source, codec = _grown_from_a_trained_frame_codec(corpus, tmp_path, decoder_layers=4)
    assert len(codec.decoder.net.blocks) == 4 and codec.config.frame.decoder_layers == 4
    assert not any(block.gamma.detach().any() for block in codec.decoder.net.blocks[2:])
    x = 0.3 * torch.randn(1, 1, 800)
    with torch.no_grad():
        codes = source.encode(x)
        torch.testing.assert_close(codec.decode(codes), source.decode(codes))
    loss = codec.decoder(codec.quantizer.decode(codes)).pow(2).mean()
    loss.backward()
    assert float(codec.decoder.net.blocks[3].gamma.grad.abs().sum()) > 0  # and they train
    with pytest.raises(ValueError, match="already has every block"):
        codec.decoder.deepen_state(codec.decoder.state_dict())


@pytest.mark.parametrize("term", ["convergence", "onset"])
def test_an_optional_term_joins_the_balanced_update(corpus, tmp_path, term):
    from musiclm.training.recipes import train_codec

    over = {"data": {"manifests": [str(corpus)]}, "trainer": {"max_steps": 2, "sample_every": 0}}
    runs = {}
    for weight in (0.0, 1.0):
        torch.manual_seed(0)
        train_codec(DEBUG, tmp_path / f"c{weight}", overrides={**over, "loss": {term: weight}})
        runs[weight] = _weights(tmp_path / f"c{weight}")
    header = next((tmp_path / "c1.0" / "csv").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    assert f"train/{term}" in header and f"grad_norm/{term}" in header
    assert any(not torch.equal(runs[0.0][k], runs[1.0][k]) for k in runs[0.0])


def test_extra_n_qs_join_quantizer_dropout_and_must_fit_the_codebooks():
    from musiclm.training.codec_module import CodecModule
    from musiclm.training.config import CodecTrainConfig, load_train_config

    config = load_train_config(CodecTrainConfig, DEBUG)
    from_bandwidths = {config.codec.n_q_for_bandwidth(b) for b in config.codec.bandwidths}
    extra = next(n for n in range(1, config.codec.n_q + 1) if n not in from_bandwidths)
    module = CodecModule(config)
    plain = {module.sample_n_q(step) for step in range(200)}
    assert plain == from_bandwidths
    config.extra_n_qs = [extra]
    module = CodecModule(config)
    drawn = {module.sample_n_q(step) for step in range(200)}
    assert drawn == from_bandwidths | {extra}
    config.extra_n_qs = [config.codec.n_q + 1]
    with pytest.raises(MusicLMError, match="extra_n_qs"):
        CodecModule(config)


def _latent_targets(codec, folder: Path, shift: float, sound_fingerprint: str | None = None) -> tuple:
    """A targets folder as train/search_latents.py writes it: three clips, each with its encoder latent
    shifted by `shift` as the 'searched' one."""
    from safetensors.torch import save_file

    folder.mkdir()
    torch.manual_seed(5)
    audio = torch.randn(3, codec.channels, 2000) * 0.3
    with torch.no_grad():
        target = codec.eval()._encode_latent(audio, 0) + shift
    meta = {"sound_fingerprint": sound_fingerprint or codec.sound_fingerprint(), "n_q": 2, "steps": 1}
    (folder / "targets.json").write_text(json.dumps(meta))
    save_file({"audio": audio, "latent": target}, str(folder / "w0_00000.safetensors"))
    return audio, target


def test_the_encoder_learns_searched_latents_and_refuses_targets_heard_through_another_decoder(corpus, tmp_path):
    """loss.latent pulls the encoder's latent towards the targets' (amortised search) while decoder and
    codebooks stay put; targets searched through another decoder, or the term without freeze_decoder, are
    one clear error."""
    from musiclm.codec import Codec
    from musiclm.training.codec_module import build_codec_module
    from musiclm.training.config import CodecTrainConfig, load_train_config
    from musiclm.training.latent_targets import latent_distance
    from musiclm.training.recipes import train_codec

    over = {"data": {"manifests": [str(corpus)]}}
    torch.manual_seed(3)
    source = Codec(load_train_config(CodecTrainConfig, DEBUG, over).codec)
    source.save_pretrained(tmp_path / "shipped")
    audio, target = _latent_targets(source, tmp_path / "targets", shift=0.5)
    with torch.no_grad():
        before = float(latent_distance(source._encode_latent(audio, 0), target))
    run = {
        **over,
        "init_from": str(tmp_path / "shipped"),
        "freeze_decoder": True,
        "freeze_codebooks": True,
        "trainer": {"max_steps": 6, "sample_every": 0},
        "optim": {"lr": 0.01},
    }
    distances = {}
    for weight in (0.0, 10.0):
        targets = {"latent_targets": [str(tmp_path / "targets")]} if weight else {}
        data = {**over["data"], **targets}
        train_codec(DEBUG, tmp_path / f"run{weight}", overrides={**run, "data": data, "loss": {"latent": weight}})
        trained = Codec.from_pretrained(tmp_path / f"run{weight}" / "export")
        with torch.no_grad():
            distances[weight] = float(latent_distance(trained.eval()._encode_latent(audio, 0), target))
        assert trained.sound_fingerprint() == source.sound_fingerprint()
    assert distances[10.0] < 0.7 * before and distances[10.0] < distances[0.0]
    header = next((tmp_path / "run10.0" / "csv").rglob("metrics.csv")).read_text().splitlines()[0].split(",")
    assert "train/latent" in header

    _latent_targets(source, tmp_path / "elsewhere", shift=0.5, sound_fingerprint="0123456789abcdef")
    bad_runs = [
        ({"latent_targets": [str(tmp_path / "elsewhere")]}, {"freeze_decoder": True}, "another|other sounds"),
        ({"latent_targets": [str(tmp_path / "targets")]}, {"freeze_decoder": False}, "freeze_decoder"),
        ({}, {"freeze_decoder": True}, "go together"),
    ]
    for i, (data, flags, message) in enumerate(bad_runs):
        config = load_train_config(
            CodecTrainConfig,
            DEBUG,
            {**run, **flags, "data": {**over["data"], **data}, "loss": {"latent": 1.0}},
        )
        (tmp_path / f"bad{i}").mkdir()
        with pytest.raises(MusicLMError, match=message):
            build_codec_module(config, tmp_path / f"bad{i}", reuse_files=False)
