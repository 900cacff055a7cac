"""The committed caption tokenizer: fixed special ids, lossless on captions, rebuilt byte for byte."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import sentencepiece as spm

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "tokenizer" / "captions.model"


def test_special_ids_and_round_trip():
    sp = spm.SentencePieceProcessor(model_file=str(MODEL))
    assert sp.get_piece_size() == 1000
    assert (sp.pad_id(), sp.unk_id(), sp.bos_id(), sp.eos_id()) == (0, 1, 2, 3)
    caption = "a slow, melancholic baroque chorale in D minor played by a string ensemble, 60 BPM, 4/4"
    ids = sp.encode(caption)
    assert sp.decode(ids) == caption.lower()  # case-folded, otherwise lossless
    assert len(ids) < 30  # the caption vocabulary is mostly whole words
    odd = "lo-fi 🎹 ♯ Ünïcode"
    assert sp.unk_id() not in sp.encode(odd)  # byte fallback: nothing is unknown


@pytest.mark.slow
def test_rebuild_is_deterministic_and_matches_committed(tmp_path):
    out = tmp_path / "rebuilt.model"
    subprocess.run(
        [sys.executable, str(ROOT / "tokenizer" / "build_tokenizer.py"), "--out", str(out)],
        check=True,
        capture_output=True,
    )
    assert out.read_bytes() == MODEL.read_bytes(), "re-run tokenizer/build_tokenizer.py and commit the model"
