"""Installs anywhere: the shipped models, recipes and tokenizer are package data, found from any directory,
and a wheel installed in a fresh venv runs generate, compress, decompress and finetune."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm import paths
from musiclm.errors import MusicLMError

ROOT = Path(__file__).resolve().parent.parent
# what a wheel is built from (pyproject's readme and packages, and the folders musiclm/assets links to)
BUILD_INPUTS = ("pyproject.toml", "README.md", "musiclm", "checkpoints", "configs", "tokenizer")
SHIPPED_FILES = (
    "musiclm/assets/checkpoints/codec/config.json",
    "musiclm/assets/checkpoints/codec/model.safetensors",
    "musiclm/assets/checkpoints/musiclm/config.json",
    "musiclm/assets/checkpoints/musiclm/model.safetensors",
    "musiclm/assets/checkpoints/musiclm/tokenizer.model",
    "musiclm/assets/configs/lm/finetune.yaml",
    "musiclm/assets/configs/codec/small.yaml",
    "musiclm/assets/tokenizer/captions.model",
)


def test_repository_links_name_the_top_level_folders():
    """In a checkout the package data are symlinks, so the repository keeps one copy of each file."""
    assets = ROOT / "musiclm" / "assets"
    for link, target in [
        (assets / "checkpoints", ROOT / "checkpoints"),
        (assets / "configs", ROOT / "configs"),
        (assets / "tokenizer" / "captions.model", ROOT / "tokenizer" / "captions.model"),
    ]:
        assert link.is_symlink() and not os.path.isabs(os.readlink(link)), link
        assert link.resolve() == target.resolve(), link


def test_shipped_files_are_found_from_any_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUSICLM_CHECKPOINTS", raising=False)
    assert (paths.default_codec_dir() / "model.safetensors").is_file()
    assert (paths.default_lm_dir() / "model.safetensors").is_file()
    assert (paths.configs_dir() / "lm" / "finetune.yaml").is_file()
    assert paths.default_tokenizer().read_bytes() == (paths.default_lm_dir() / "tokenizer.model").read_bytes()

    # the relative paths the READMEs give resolve to the shipped files when the working directory lacks them
    assert paths.resolve_shipped("configs/lm/small.yaml") == paths.configs_dir() / "lm" / "small.yaml"
    assert paths.resolve_shipped("tokenizer/captions.model") == paths.default_tokenizer()
    assert paths.resolve_shipped("checkpoints/codec") == paths.default_codec_dir()
    assert paths.resolve_shipped("configs/lm/missing.yaml") == Path("configs/lm/missing.yaml")
    assert paths.resolve_shipped("recipes/x.yaml") == Path("recipes/x.yaml")
    # ... but a file of the user's own by that name wins
    (tmp_path / "configs" / "lm").mkdir(parents=True)
    (tmp_path / "configs" / "lm" / "small.yaml").write_text("lm: {}\n")
    assert paths.resolve_shipped("configs/lm/small.yaml") == Path("configs/lm/small.yaml")

    monkeypatch.setenv("MUSICLM_CHECKPOINTS", str(tmp_path / "mine"))
    assert paths.checkpoints_dir() == tmp_path / "mine"
    with pytest.raises(MusicLMError, match="MUSICLM_CHECKPOINTS"):
        paths.default_codec_dir()


def test_shipped_lm_was_trained_on_the_shipped_codec_tokens():
    """The shipped pair is one set: the LM's recorded token space is the shipped codec's."""
    from musiclm.codec import Codec

    recorded = json.loads((paths.default_lm_dir() / "config.json").read_text()).get("codec_fingerprint")
    assert recorded == Codec.from_pretrained(paths.default_codec_dir()).fingerprint()


def _run(cmd: list, cwd: Path, env: dict | None = None, timeout: float = 600) -> str:
    proc = subprocess.run([str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
    return proc.stdout


def _build_wheel(tmp_path: Path) -> Path:
    """Build from a copy of the tree, so a concurrent build or a stale build/ here cannot interfere.
    --no-build-isolation: the venv's own setuptools (the [dev] extra), no download."""
    src = tmp_path / "src"
    src.mkdir()
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info")
    for name in BUILD_INPUTS:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, symlinks=True, ignore=skip)
        else:
            shutil.copy2(ROOT / name, src / name)
    out = tmp_path / "dist"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", out, src], tmp_path)
    (wheel,) = out.glob("musiclm-*.whl")
    return wheel


def _fresh_venv(tmp_path: Path, wheel: Path) -> Path:
    """A new venv holding only the wheel (installed with --no-deps). Its dependencies (torch and the rest,
    ~2 GB) come from this project's venv through a .pth file: a line in a .pth file appends that folder to
    sys.path after the venv's own site-packages (whose `musiclm` therefore wins), and .pth files inside an
    appended folder are not run, so the project's editable install of musiclm stays switched off there."""
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--no-index", "-q", wheel], tmp_path)
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], tmp_path).strip())
    ours = dict.fromkeys([sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]])
    (site / "project-dependencies.pth").write_text("".join(f"{p}\n" for p in ours))
    return venv


@pytest.mark.slow
def test_wheel_installs_and_runs_from_an_unrelated_directory(tmp_path):
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    assert set(SHIPPED_FILES) <= names, set(SHIPPED_FILES) - names
    version = wheel.name.split("-")[1]
    assert {n.split("/")[0] for n in names} == {"musiclm", f"musiclm-{version}.dist-info"}  # nothing else

    venv = _fresh_venv(tmp_path, wheel)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MUSICLM_CHECKPOINTS", "PYTHONPATH")}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", WANDB_MODE="offline", OMP_NUM_THREADS="1")
    python, musiclm = venv / "bin" / "python", venv / "bin" / "musiclm"
    where = _run([python, "-c", "import musiclm.paths as p; print(p.__file__); print(p.default_lm_dir())"], work, env)
    assert all(line.startswith(str(venv)) for line in where.split()), f"not the installed package:\n{where}"

    _run([musiclm, "generate", "calm piano in C major", "--duration", "1", "--seed", "0", "-o", "gen.wav"], work, env)
    info = sf.info(work / "gen.wav")
    assert info.samplerate == 24000 and abs(info.duration - 1.0) < 0.05

    _run([musiclm, "compress", "-q", "gen.wav", "gen.mlc"], work, env)
    _run([musiclm, "decompress", "-q", "gen.mlc", "back.wav"], work, env)
    assert sf.info(work / "back.wav").frames == info.frames

    # finetune with the shipped model and its default recipe (configs/lm/finetune.yaml), one step
    catalog = work / "catalog"
    catalog.mkdir()
    t = np.arange(3 * 24000) / 24000
    for i, hz in enumerate((330.0, 440.0, 550.0)):
        sf.write(catalog / f"tune{i}.wav", 0.3 * np.sin(2 * np.pi * hz * t * (1 + (t % 0.5))), 24000)
    _run([musiclm, "finetune", "catalog", "--out", "tuned", "--steps", "1", "--layers", "0"], work, env)
    report = json.loads((work / "tuned" / "finetune" / "report.json").read_text())
    assert report["steps"] == 1 and report["indexed"] == 3, report
    assert (work / "tuned" / "model.safetensors").is_file() and (work / "tuned" / "codec" / "config.json").is_file()
