"""A model directory is input from strangers: config.json is checked against the safetensors header before
anything is built, so a config that asks for huge tensors fails fast, small, and in one line (issue 13)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from test_lm_model import debug_model_dir

from musiclm.cli import main
from musiclm.codec import Codec
from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return debug_model_dir(tmp_path_factory.mktemp("ckpt"))  # <root>/musiclm + <root>/codec (16-d, 64 codes)


def _edit(directory, **changes) -> None:
    meta = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps({**meta, **changes}))


def _copy(src, dst):
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_codec_config_that_disagrees_with_its_weights_is_refused_before_building(model_dir, tmp_path):
    codec_dir = _copy(model_dir.parent / "codec", tmp_path / "codec")
    _edit(codec_dir, card=1_000_000)
    disagree = r"config.json disagrees with model.safetensors: quantizer\.layers\.0\.\w+ is \[64(, 16)?\] in the file, "
    with pytest.raises(MusicLMError, match=disagree + r"\[1000000(, 16)?\] by the config"):
        Codec.from_pretrained(codec_dir)
    _edit(codec_dir, card=64, n_q=1_000_000)
    with pytest.raises(MusicLMError, match="n_q is 1000000 by the config, the file holds 4"):
        Codec.from_pretrained(codec_dir)
    _edit(codec_dir, n_q=2)  # fewer codebooks than the file holds: the rest have no place
    with pytest.raises(MusicLMError, match="which the config has no place for"):
        Codec.from_pretrained(codec_dir)


def test_lm_config_that_disagrees_with_its_weights_is_refused_before_building(model_dir, tmp_path):
    lm_dir = _copy(model_dir, tmp_path / "musiclm")
    _copy(model_dir.parent / "codec", tmp_path / "codec")
    _edit(lm_dir, dim=65536)
    with pytest.raises(MusicLMError, match=r"embed.weight is \[260, 32\] in the file, \[260, 65536\] by the config"):
        MusicLM.from_pretrained(lm_dir)
    _edit(lm_dir, dim=32, n_heads=5)  # 32 is not divisible by 5: an assert inside the module, reported in one line
    with pytest.raises(MusicLMError, match="describes no buildable model"):
        MusicLM.from_pretrained(lm_dir)


def test_hostile_configs_fail_fast_and_small(model_dir, tmp_path):
    """n_q and card 10^6 in a codec, width 65536 in an LM: before the check, a 19 GB / 51 GB allocation."""
    root = tmp_path / "hostile"
    lm_dir = _copy(model_dir, root / "musiclm")
    codec_dir = _copy(model_dir.parent / "codec", root / "codec")
    _edit(codec_dir, n_q=1_000_000, card=1_000_000)
    _edit(lm_dir, dim=65536)
    script = textwrap.dedent(
        f"""
        import json, resource, time
        from musiclm.codec import Codec
        from musiclm.errors import MusicLMError
        from musiclm.lm import MusicLM
        seconds = {{}}
        for name, load, path in (("codec", Codec.from_pretrained, {str(codec_dir)!r}),
                                 ("lm", MusicLM.from_pretrained, {str(lm_dir)!r})):
            start = time.perf_counter()
            try:
                load(path)
            except MusicLMError:
                seconds[name] = time.perf_counter() - start
        print(json.dumps({{"seconds": seconds, "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
        """
    )
    run = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(result["seconds"]) == {"codec", "lm"}, result  # both refused with MusicLMError
    assert max(result["seconds"].values()) < 2.0, result
    assert result["rss_mb"] < 1500, result  # the interpreter with torch; the refused models would be GBs


def test_cli_reports_a_hostile_model_in_one_line(model_dir, tmp_path, capsys):
    root = tmp_path / "hostile"
    lm_dir = _copy(model_dir, root / "musiclm")
    codec_dir = _copy(model_dir.parent / "codec", root / "codec")
    _edit(codec_dir, n_q=1_000_000, card=1_000_000)
    assert main(["generate", "calm piano", "-o", str(tmp_path / "x.wav"), "--model", str(lm_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclm: error:") and "\n" not in err and "config.json disagrees" in err
    _edit(lm_dir, dim=65536)
    assert main(["generate", "calm piano", "-o", str(tmp_path / "x.wav"), "--model", str(lm_dir)]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "65536" in err
