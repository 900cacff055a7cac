"""`musiclm eval report`: the page is written whatever is missing, its figures are real, and a real headless
browser renders it with working <img> and <audio> sources."""

import functools
import http.server
import json
import math
import re
import shutil
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch

from musiclm.audio import save_audio
from musiclm.errors import MusicLMError
from musiclm.evaluation.report import ReportConfig, build_report

SR = 8000


@pytest.fixture
def no_shipped(tmp_path, monkeypatch):
    """No shipped checkpoints: the report must not silently pick up checkpoints/ from the repository."""
    empty = tmp_path / "no_checkpoints"
    empty.mkdir()
    monkeypatch.setenv("MUSICLM_CHECKPOINTS", str(empty))


def _write_manifest(folder: Path, seconds: float = 2.0) -> Path:
    """Two test pieces and one valid piece of synthetic music (a chord with beats, noise bursts)."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    t = torch.arange(int(seconds * SR)) / SR
    for i, (split, f0) in enumerate((("test", 220.0), ("test", 330.0), ("valid", 262.0))):
        tone = sum(torch.sin(2 * math.pi * f0 * r * t) for r in (1.0, 1.25, 1.5)) / 3
        beat = torch.exp(-(t % 0.5) / 0.05)
        wav = (0.4 * tone * beat + 0.01 * torch.randn_like(t))[None]
        save_audio(folder / f"clip{i}.wav", wav, SR)
        rows.append(
            {
                "id": f"synthetic/clip{i}",
                "path": f"clip{i}.wav",
                "duration": seconds,
                "sample_rate": SR,
                "channels": 1,
                "piece": f"piece{i}",
                "split": split,
                "caption": "a test piece in C major, 120 BPM",
                "fields": {},
                "source": "synth",
            }
        )
    manifest = folder / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return manifest


def _write_runs(folder: Path) -> None:
    run = folder / "codec" / "version_0"
    run.mkdir(parents=True)
    lines = ["epoch,step,train/loss,val/si_snr"]
    for step in range(0, 200, 10):
        lines.append(f"0,{step},{3 * math.exp(-step / 50) + 0.1},")
        if step % 50 == 0:
            lines.append(f"0,{step},,{step / 20}")
    (run / "metrics.csv").write_text("\n".join(lines) + "\n")


def test_report_says_what_is_missing_instead_of_crashing(tmp_path, no_shipped):
    out = tmp_path / "report"
    cfg = ReportConfig(out=out, manifests=(tmp_path / "missing.jsonl",), runs=tmp_path / "no_runs")
    index = build_report(cfg)
    page = index.read_text()
    assert "No codec" in page and "No LM" in page and "No Lightning CSVLogger" in page
    assert 'class="error"' not in page  # missing inputs are not errors
    with pytest.raises(MusicLMError, match="--force"):
        build_report(cfg)
    cfg.force = True
    build_report(cfg)


def test_report_notes_missing_test_clips(tmp_path, no_shipped, tiny_codec):
    codec_dir = tiny_codec.save_pretrained(tmp_path / "codec")
    cfg = ReportConfig(
        out=tmp_path / "report", codec=codec_dir, manifests=(tmp_path / "none.jsonl",), speed_threads=()
    )  # speed is covered by the full report below
    page = build_report(cfg).read_text()
    assert "no test clips" in page and 'class="error"' not in page


def _tiny_lm_dir(tmp: Path) -> Path:
    """A random tiny MusicLM with its own 25 frames/s codec and a SentencePiece tokenizer, saved to disk."""
    import dataclasses

    from test_lm_model import tiny_config, train_tokenizer

    from musiclm.codec import Codec, CodecConfig, SEANetConfig
    from musiclm.lm import MusicLM

    lm_codec = Codec(
        CodecConfig(
            name="tiny-lm-codec",
            sample_rate=SR,
            seanet=SEANetConfig(n_filters=4, dimension=16, ratios=(8, 5, 4, 2)),
            n_q=4,
            card=32,
            bandwidths=(0.5,),
        )
    )
    lm_codec.save_pretrained(tmp / "lm_codec")
    config = dataclasses.replace(tiny_config(card=32, sample_rate=SR, frame_rate=25.0), max_frames=40)
    model = MusicLM(config, tokenizer=train_tokenizer(tmp))
    return model.save_pretrained(tmp / "model", codec_path="../lm_codec")


@pytest.fixture(scope="module")
def full_report(tmp_path_factory):
    """A report with a tiny random codec, synthetic clips, a tiny random LM and a training log."""
    from musiclm.codec import Codec, CodecConfig, SEANetConfig

    tmp = tmp_path_factory.mktemp("full")
    torch.manual_seed(0)
    codec = Codec(
        CodecConfig(
            name="tiny-test",
            sample_rate=SR,
            seanet=SEANetConfig(n_filters=4, dimension=16, ratios=(4, 2)),
            n_q=4,
            card=64,
            bandwidths=(6.0, 12.0, 24.0),
        )
    ).eval()
    codec_dir = codec.save_pretrained(tmp / "codec")
    manifest = _write_manifest(tmp / "data")
    _write_runs(tmp / "runs")
    model_dir = _tiny_lm_dir(tmp)
    mp = pytest.MonkeyPatch()
    mp.setenv("MUSICLM_CHECKPOINTS", str(tmp / "no_checkpoints"))
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny ops run faster on one thread of a busy machine
    cfg = ReportConfig(
        out=tmp / "report",
        codec=codec_dir,
        model=model_dir,
        runs=tmp / "runs",
        manifests=(manifest,),
        lm_manifest=manifest,
        clips=1,
        clip_seconds=1.5,
        speed_threads=(1,),
        speed_seconds=0.5,
        gen_seconds=1.0,
        seeds=2,
    )
    try:
        index = build_report(cfg)
    finally:
        mp.undo()
        torch.set_num_threads(threads)
    return index


@pytest.mark.slow
def test_report_figures_and_files(full_report):
    out = full_report.parent
    page = full_report.read_text()
    assert 'class="error"' not in page, page[page.find('class="error"') :][:2000]
    figures = json.loads((out / "figures.json").read_text())
    rows = figures["codec"]
    systems = {(r["kbps"], r["system"]) for r in rows}
    assert {(6.0, "musiclm codec"), (12.0, "musiclm codec"), (24.0, "musiclm codec")} <= systems
    for r in rows:
        assert r["kbps_on_disk"] > 0
        if r["system"] == "musiclm codec":  # .mlc size: at least the codes' bits, at most 30% overhead
            assert r["kbps"] * 0.99 <= r["kbps_bit_packed"] <= r["kbps"] * 1.3
            assert r["kbps_on_disk"] <= r["kbps_bit_packed"] + 1e-9  # range coding only where smaller
        assert r["si_snr"] is not None and np.isfinite(r["si_snr"])
    if shutil.which("ffmpeg"):
        assert (6.0, "opus") in systems
    assert figures["codec_speed"][0]["encode_x_realtime"] > 0
    assert figures["training"][0]["train/loss"] == pytest.approx(3 * math.exp(-190 / 50) + 0.1)
    lm = figures["lm"]
    assert lm["diversity"][0]["mean_pairwise_distance"] > 0  # different seeds, different audio
    assert lm["generation"] == {"notes": "none", "midi": []} and "Played from the text alone" in page
    assert len(lm["perplexity"]["per_codebook"]) == 4  # a random LM: near-uniform over 32 entries
    assert all(8 < p < 128 for p in lm["perplexity"]["per_codebook"])
    assert {f["set"] for f in lm["frechet"]} == {"generated, cfg=3", "generated, cfg=1"}
    assert all(f["fd"] >= 0 and f["fd_codec"] >= 0 for f in lm["frechet"])
    if "adherence" in lm:
        assert {a["control"] for a in lm["adherence"]} == {"tempo", "mode", "brightness"}
        assert {a["cfg"] for a in lm["adherence"]} == {3.0, 1.0}
    for src in re.findall(r'src="([^"]+)"', page):
        assert (out / src).is_file(), src


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def _chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.slow
@pytest.mark.skipif(_chromium() is None, reason="chromium not installed (make system-deps)")
def test_report_renders_in_headless_chromium(full_report, tmp_path):
    out = full_report.parent
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(_QuietHandler, directory=str(out)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/index.html"
    flags = [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]
    try:
        shot = tmp_path / "page.png"
        subprocess.run(
            flags + [f"--screenshot={shot}", "--window-size=1200,1600", url],
            capture_output=True,
            timeout=120,
            check=True,
        )
        dom = subprocess.run(
            flags + ["--dump-dom", url], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    finally:
        server.shutdown()
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)  # [H, W, 3 or 4] floats in [0, 1]
    assert pixels.shape[0] > 100 and pixels[..., :3].std() > 0.05, "screenshot is blank"
    assert "musiclm evaluation report" in dom
    audio = re.findall(r'<audio[^>]*src="([^"]+)"', dom)
    images = re.findall(r'<img[^>]*src="([^"]+)"', dom)
    assert len(audio) >= 4 and len(images) >= 2
    for src in audio:
        assert (out / src).is_file() and (out / src).read_bytes()[:4] == b"RIFF", src
    for src in images:
        assert (out / src).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", src


def test_cli_report_and_errors(tmp_path, no_shipped, capsys):
    from musiclm.cli import main

    out = tmp_path / "r"
    args = [
        "eval",
        "report",
        "--out",
        str(out),
        "--runs",
        str(tmp_path / "none"),
        "--manifest",
        str(tmp_path / "none.jsonl"),
        "--lm-manifest",
        str(tmp_path / "none.jsonl"),
    ]
    assert main(args) == 0 and (out / "index.html").is_file()
    assert main(args) == 2 and "--force" in capsys.readouterr().err  # refuses to overwrite
    assert main(args + ["--force"]) == 0
    assert main(["eval", "report", "--out", str(out), "--codec", str(tmp_path / "nope")]) == 2
    assert "codec directory not found" in capsys.readouterr().err
    assert main(["eval", "speed", "--codec", str(tmp_path / "nope")]) == 2


@pytest.mark.slow
def test_report_plays_a_note_conditioned_model_from_plans_and_links_them(tmp_path, monkeypatch):
    """A note-conditioned LM is evaluated the way `musiclm generate` plays it: text → plan → notes → LM; the
    generation section says so and links each plan as MIDI beside its WAV."""
    from test_lm_model import debug_model_dir

    import musiclm.generate
    from musiclm.evaluation.adherence import Estimators
    from musiclm.notes.midi import load_midi, note_array
    from musiclm.paths import checkpoints_dir

    planner = checkpoints_dir() / "planner"
    if not (planner / "config.json").is_file():
        pytest.skip("the shipped planner (checkpoints/planner) is not here")
    shipped = tmp_path / "checkpoints"  # the planner only: no shipped codec or LM is picked up
    shipped.mkdir()
    (shipped / "planner").symlink_to(planner.resolve())
    monkeypatch.setenv("MUSICLM_CHECKPOINTS", str(shipped))

    def no_estimators():
        raise MusicLMError("estimators off in this test")  # adherence is covered by the full report

    monkeypatch.setattr(Estimators, "default", staticmethod(no_estimators))
    calls = []
    note_condition = musiclm.generate.note_condition

    def counted(model, prompts, options, *args, **kw):
        notes = note_condition(model, prompts, options, *args, **kw)
        calls.append((list(prompts), notes.features is not None and notes.plans is not None))
        return notes

    monkeypatch.setattr(musiclm.generate, "note_condition", counted)
    model_dir = debug_model_dir(tmp_path / "lm", SR, note_features=48)
    cfg = ReportConfig(
        out=tmp_path / "report",
        model=model_dir,
        runs=tmp_path / "no_runs",
        lm_manifest=_write_manifest(tmp_path / "data"),
        speed_threads=(),
        gen_seconds=1.0,
        seeds=2,
    )
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        page = build_report(cfg).read_text()
    finally:
        torch.set_num_threads(threads)
    assert 'class="error"' not in page, page[page.find('class="error"') :][:2000]
    assert "Played from a plan" in page and "note-conditioned" in page
    assert len(calls) == 1 + cfg.seeds and all(planned for _, planned in calls)  # demo + diversity, all planned
    figures = json.loads((cfg.out / "figures.json").read_text())["lm"]["generation"]
    assert figures["notes"] == "plan" and len(figures["midi"]) == 3
    links = re.findall(r'<a href="([^"]+\.mid)">plan \(MIDI\)</a>', page)
    assert links == figures["midi"] == [f"audio/generation_{i}.mid" for i in range(3)]
    for link in links:
        wav = (cfg.out / link).with_suffix(".wav")
        assert wav.is_file() and len(note_array(load_midi(cfg.out / link))) > 0  # beside its WAV, with notes
