"""`musiclm generate` and `MusicLM.generate` end to end with a debug LM + a random debug codec."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from test_lm_model import debug_model_dir

from musiclm.cli import main
from musiclm.errors import MusicLMError
from musiclm.lm import MusicLM

pytestmark = pytest.mark.usefixtures("one_thread")

SR = 8000


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return debug_model_dir(tmp_path_factory.mktemp("ckpt"), SR)


def test_python_api_is_deterministic_with_a_seed(model_dir):
    model = MusicLM.from_pretrained(model_dir)
    a = model.generate(["calm piano", "fast flute"], duration=1.0, seed=3)
    b = model.generate(["calm piano", "fast flute"], duration=1.0, seed=3)
    assert a.shape == (2, 1, SR) and torch.equal(a, b)
    assert not torch.equal(a, model.generate(["calm piano", "fast flute"], duration=1.0, seed=4))
    exact = model.generate(["calm piano", "fast flute"], duration=1.0, seed=3, fp32=True)
    assert torch.equal(exact, model.generate(["calm piano", "fast flute"], duration=1.0, seed=3, fp32=True))


def test_python_api_continuation_keeps_the_prompt_codes(model_dir):
    model = MusicLM.from_pretrained(model_dir)
    prompt = model.generate("calm piano", duration=0.5, seed=1)
    out = model.generate("calm piano", duration=1.2, seed=2, prompt_wav=prompt)
    assert out.shape == (1, 1, int(1.2 * SR))
    # the output decodes the prompt's codes first: away from the seam it is the prompt's reconstruction
    reconstruction = model.codec.decode(model.codec.encode(prompt, n_q=model.n_q))
    seam = int(0.4 * SR)
    torch.testing.assert_close(out[..., :seam], reconstruction[..., :seam], atol=1e-5, rtol=1e-4)
    with pytest.raises(MusicLMError, match="shorter"):
        model.generate("x", duration=0.5, prompt_wav=prompt)


def test_cli_end_to_end(model_dir, tmp_path, capsys):
    out = tmp_path / "x.wav"
    args = [
        "generate",
        "calm piano in c major",
        "-o",
        str(out),
        "--duration",
        "1",
        "--seed",
        "1",
        "--model",
        str(model_dir),
    ]
    assert main(args) == 0
    audio, sr = sf.read(out, dtype="float32")
    assert sr == SR and audio.shape == (SR,) and np.isfinite(audio).all()
    assert "wrote" in capsys.readouterr().out

    assert main(args) == 2  # refuses to overwrite
    assert "--force" in capsys.readouterr().err
    assert main(args + ["--force"]) == 0
    again, _ = sf.read(out, dtype="float32")
    assert np.array_equal(audio, again)  # same seed, same audio
    assert main(args + ["--force", "--fp32"]) == 0  # full precision: still a valid, finite file
    exact, _ = sf.read(out, dtype="float32")
    assert exact.shape == audio.shape and np.isfinite(exact).all()

    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# demo prompts\nslow strings in d minor\n\nfast folk flute\n")
    assert (
        main(
            [
                "generate",
                "--prompts",
                str(prompts),
                "bright brass",
                "-o",
                str(tmp_path / "many.flac"),
                "--duration",
                "1",
                "--seed",
                "2",
                "--model",
                str(model_dir),
                "--top-p",
                "0.9",
            ]
        )
        == 0
    )
    written = sorted(p.name for p in tmp_path.glob("many-*.flac"))
    assert written == ["many-1.flac", "many-2.flac", "many-3.flac"]
    assert sf.info(tmp_path / "many-1.flac").format == "FLAC"

    assert (
        main(
            [
                "generate",
                "the same, continued",
                "--continue",
                str(out),
                "--duration",
                "1.5",
                "--seed",
                "1",
                "-o",
                str(tmp_path / "longer.wav"),
                "--model",
                str(model_dir),
            ]
        )
        == 0
    )
    assert sf.info(tmp_path / "longer.wav").frames == int(1.5 * SR)


def test_cli_errors_are_one_line(model_dir, tmp_path, capsys):
    assert main(["generate", "x", "-o", str(tmp_path / "a.wav"), "--model", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclm: error:") and "not found" in err and "\n" not in err
    assert main(["generate", "-o", str(tmp_path / "a.wav"), "--model", str(model_dir)]) == 2
    assert "no prompt" in capsys.readouterr().err
    assert main(["generate", "x", "--duration", "0", "--model", str(model_dir)]) == 2
    assert "duration" in capsys.readouterr().err
