"""`musiclm data`: bad values and unusable outputs end in one line and exit 2; outputs respect the umask."""

from __future__ import annotations

import math
import os
import stat

import pytest
import torch

from musiclm.audio import save_audio
from musiclm.cli import main

pytestmark = pytest.mark.usefixtures("one_thread")


def _one_line_error(capsys, args) -> str:
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclm: error:") and "\n" not in err, err
    return err


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("music")
    t = torch.arange(3 * 8000) / 8000
    save_audio(root / "tune.wav", (0.3 * torch.sin(2 * math.pi * 440 * t))[None], 8000)
    return root


@pytest.mark.parametrize("minutes", ["0", "-1", "nan", "inf"])
def test_synth_refuses_a_corpus_of_no_minutes(tmp_path, capsys, minutes):
    err = _one_line_error(capsys, ["data", "synth", "--out", str(tmp_path / "synth"), "--minutes", minutes])
    assert "--minutes" in err and not (tmp_path / "synth").exists()


def test_index_refuses_a_folder_or_a_foreign_file_as_its_manifest(folder, tmp_path, capsys):
    (tmp_path / "a_dir").mkdir()
    assert "is a folder" in _one_line_error(capsys, ["data", "index", str(folder), "--out", str(tmp_path / "a_dir")])
    binary = tmp_path / "photo.jsonl"
    binary.write_bytes(bytes(range(256)) * 4)
    err = _one_line_error(capsys, ["data", "index", str(folder), "--out", str(binary)])
    assert "not an index" in err and binary.read_bytes() == bytes(range(256)) * 4  # left as it was
    assert main(["data", "index", str(folder), "--out", str(binary), "--force"]) == 0  # --force replaces it


def test_index_output_respects_the_umask(folder, tmp_path):
    previous = os.umask(0o002)
    try:
        assert main(["data", "index", str(folder), "--out", str(tmp_path / "catalog.jsonl")]) == 0
    finally:
        os.umask(previous)
    for name in ("catalog.jsonl", "catalog.jsonl.report.json"):
        assert stat.S_IMODE((tmp_path / name).stat().st_mode) == 0o664, name
