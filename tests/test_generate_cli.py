"""`musiclm generate` and `MusicLM.generate` end to end with a debug LM + a random debug codec."""

from __future__ import annotations

import os
import stat
from dataclasses import replace

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


def _cli(model_dir, *args) -> list[str]:
    return ["generate", *args, "--model", str(model_dir)]


def test_same_prompt_and_seed_give_the_same_audio_alone_in_a_batch_from_a_file_and_from_python(
    model_dir, tmp_path, capsys
):
    """Issue 13: a caption's audio depends on its text and seed only, not on the captions beside it."""
    from musiclm.lm.generation import GenerationOptions, generate_tokens

    model = MusicLM.from_pretrained(model_dir)
    options = GenerationOptions(duration=1.0, seed=7)
    alone = generate_tokens(model, ["calm piano"], options)
    batch = generate_tokens(model, ["fast folk flute in g major, lively", "calm piano", "x"], options)
    assert torch.equal(alone[0], batch[1])  # codes, bit-exact
    wav_alone = model.generate("calm piano", options)
    wav_batch = model.generate(["fast folk flute in g major, lively", "calm piano", "x"], options)
    assert torch.equal(wav_alone[0], wav_batch[1])  # audio, bit-exact
    # a repeated caption gets seed + 1 for its repeat: a different take, the same as asking for seed 8
    twice = model.generate(["calm piano", "calm piano"], options)
    assert torch.equal(twice[0], wav_alone[0]) and not torch.equal(twice[1], wav_alone[0])
    assert torch.equal(twice[1], model.generate("calm piano", duration=1.0, seed=8)[0])

    # the CLI: alone, second of two, from a prompts file; and the Python API's float audio as 16-bit PCM
    # (--loudness off: the decoder's own level, what MusicLM.generate returns)
    raw = ["--seed", "7", "--duration", "1", "--loudness", "off"]
    assert main(_cli(model_dir, "calm piano", *raw, "-o", str(tmp_path / "a.wav"))) == 0
    args = ["fast folk flute in g major, lively", "calm piano", *raw]
    assert main(_cli(model_dir, *args, "-o", str(tmp_path / "b.wav"))) == 0
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nx\ncalm piano\n", encoding="utf-8")
    file_args = ["--prompts", str(prompts), *raw, "-o", str(tmp_path / "c.wav")]
    assert main(_cli(model_dir, *file_args)) == 0
    a, _ = sf.read(tmp_path / "a.wav", dtype="int16")
    assert np.array_equal(a, sf.read(tmp_path / "b-2.wav", dtype="int16")[0])
    assert np.array_equal(a, sf.read(tmp_path / "c-2.wav", dtype="int16")[0])
    pcm = np.clip(np.floor(wav_alone[0, 0].numpy().astype(np.float64) * 32768), -32768, 32767)
    assert np.array_equal(a, pcm)


@pytest.mark.parametrize(
    "args, words",
    [
        (["--seed", "99999999999999999999"], "seed"),
        (["--seed", "-1"], "seed"),
        (["--temperature", "nan"], "temperature"),
        (["--temperature", "inf"], "temperature"),
        (["--temperature", "-1"], "temperature"),
        (["--cfg", "nan"], "cfg"),
        (["--cfg", "inf"], "cfg"),
        (["--cfg", "-0.5"], "cfg"),
        (["--top-p", "nan"], "top-p"),
        (["--duration", "nan"], "duration"),
        (["--duration", "1e9"], "3600"),
        (["--duration", "1e-9"], "minimum is 0.02 s"),  # shorter than one frame of the 50 frames/s codec
        (["--batch-size", "0"], "batch-size"),
        (["--loudness", "loud"], "'off'"),
        (["--loudness", "6"], "between -70 and 0"),
    ],
)
def test_cli_refuses_bad_values_in_one_line(model_dir, tmp_path, capsys, args, words):
    assert main(_cli(model_dir, "calm piano", "-o", str(tmp_path / "x.wav"), *args)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("musiclm: error:") and "\n" not in err and words in err, err
    assert not list(tmp_path.iterdir())  # nothing written, not even an empty WAV


def test_cli_refuses_unreadable_prompts_and_unwritable_outputs_in_one_line(model_dir, tmp_path, capsys):
    def one_line_error(*args) -> str:
        assert main(_cli(model_dir, *args)) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("musiclm: error:") and "\n" not in err, err
        return err

    latin1 = tmp_path / "prompts.txt"
    latin1.write_bytes("café au lait, calm piano\n".encode("latin-1"))
    assert "not UTF-8" in one_line_error("--prompts", str(latin1), "-o", str(tmp_path / "x.wav"))
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    assert "not a folder" in one_line_error("calm piano", "-o", str(a_file / "x.wav"))
    assert "not a folder" in one_line_error("calm piano", "-o", str(a_file / "deeper" / "x.wav"))
    assert "not a regular file" in one_line_error("calm piano", "-o", "/dev/null", "--force")
    # a folder the kernel refuses to create files in (procfs), whoever runs the tests: fails at write time,
    # after the progress bar, with one line and no traceback
    assert main(_cli(model_dir, "calm piano", "--duration", "0.1", "--seed", "0", "-o", "/proc/musiclm-test.wav")) == 2
    err = capsys.readouterr().err.strip()
    last = err.splitlines()[-1]
    assert last.startswith("musiclm: error:") and "cannot write" in last and "Traceback" not in err
    assert not list(tmp_path.glob(".*.part")) and a_file.read_text() == "mine"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_cli_refuses_a_read_only_output_folder(model_dir, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o500)
    assert main(_cli(model_dir, "calm piano", "-o", str(folder / "x.wav"))) == 2
    err = capsys.readouterr().err.strip()
    assert "not writable" in err and "\n" not in err


def test_output_format_is_the_one_the_extension_names(model_dir, tmp_path, capsys):
    base = ["calm piano", "--duration", "0.5", "--seed", "1"]
    formats = {"x.wav": "WAV", "x.flac": "FLAC", "x.ogg": "OGG"}
    if "MP3" in sf.available_formats():
        formats["x.mp3"] = "MP3"
    for name, fmt in formats.items():
        assert main(_cli(model_dir, *base, "-o", str(tmp_path / name))) == 0
        assert sf.info(tmp_path / name).format == fmt, name
    assert main(_cli(model_dir, *base, "-o", str(tmp_path / "plain"), "--format", "flac")) == 0
    assert sf.info(tmp_path / "plain.flac").format == "FLAC"
    capsys.readouterr()
    for args, words in (
        (["-o", str(tmp_path / "c.wav"), "--format", "flac"], "disagrees"),
        (["-o", str(tmp_path / "c.xyz")], "unknown extension"),
    ):
        assert main(_cli(model_dir, *base, *args)) == 2
        err = capsys.readouterr().err.strip()
        assert words in err and "\n" not in err
    assert not (tmp_path / "c.wav").exists() and not (tmp_path / "c.xyz").exists()


def test_stdout_gets_the_wav_alone(model_dir, tmp_path, capsysbinary):
    import io

    base = ["calm piano", "--duration", "0.7", "--seed", "3"]
    assert main(_cli(model_dir, *base, "-o", "-")) == 0
    captured = capsysbinary.readouterr()
    assert b"wrote stdout" in captured.err
    audio, sr = sf.read(io.BytesIO(captured.out), dtype="int16")
    assert sr == SR and audio.shape == (int(0.7 * SR),) and len(captured.out) == 44 + 2 * audio.size
    assert main(_cli(model_dir, *base, "-o", str(tmp_path / "same.wav"))) == 0
    assert np.array_equal(audio, sf.read(tmp_path / "same.wav", dtype="int16")[0])
    capsysbinary.readouterr()
    assert main(_cli(model_dir, "a", "b", "-o", "-")) == 2
    assert b"one prompt" in capsysbinary.readouterr().err


def test_generated_files_respect_the_umask(model_dir, tmp_path):
    previous = os.umask(0o002)
    try:
        assert main(_cli(model_dir, "calm piano", "--duration", "0.3", "-o", str(tmp_path / "x.flac"))) == 0
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "x.flac").stat().st_mode) == 0o664


def test_long_audio_is_decoded_window_by_window_like_one_shot(model_dir):
    from musiclm.lm.generation import decode_windows

    model = MusicLM.from_pretrained(model_dir)
    codec = model.codec
    codes = torch.randint(0, codec.card, (model.n_q, 90), generator=torch.Generator().manual_seed(0))
    n = 90 * codec.hop_length - 37
    one_shot = codec.decode(codes[None], length=n)[0]
    blocks = list(decode_windows(codec, codes, n, frames=20))
    assert len(blocks) == 5 and [b.shape[-1] for b in blocks][:4] == [20 * codec.hop_length] * 4
    torch.testing.assert_close(torch.cat(blocks, dim=-1), one_shot, atol=1e-5, rtol=1e-4)


def test_one_options_object_for_every_way_in(model_dir):
    """GenerationOptions holds the defaults; MusicLM.generate and musiclm.generate.generate take it (or its
    fields by name) and give the same audio; an unknown option is an error, not silently ignored."""
    from musiclm.generate import generate
    from musiclm.lm.generation import GenerationOptions

    model = MusicLM.from_pretrained(model_dir)
    options = GenerationOptions(duration=0.5, seed=3, top_k=8)
    a = model.generate(["calm piano"], options)
    assert torch.equal(a, model.generate(["calm piano"], duration=0.5, seed=3, top_k=8))
    assert torch.equal(a, generate(["calm piano"], model=model, options=options))
    assert GenerationOptions().sampling(model.config).cfg == model.config.cfg  # unset: the model's default
    with pytest.raises(TypeError):
        model.generate(["calm piano"], options, tempo=3)


def test_files_are_written_at_the_asked_loudness_never_clipped(model_dir, tmp_path):
    from musiclm.data.analysis import loudness_db
    from musiclm.generate import MAX_GAIN_DB, PEAK_CEILING, loudness_gain

    base = ["calm piano", "--duration", "1", "--seed", "3"]
    levels = {}
    for name, extra in {"default": [], "quiet": ["--loudness", "-30"], "off": ["--loudness", "off"]}.items():
        assert main(_cli(model_dir, *base, *extra, "-o", str(tmp_path / f"{name}.wav"))) == 0
        audio, _ = sf.read(tmp_path / f"{name}.wav")
        levels[name] = loudness_db(audio, SR)
        assert np.abs(audio).max() <= PEAK_CEILING + 1e-4
    model = MusicLM.from_pretrained(model_dir)
    raw = model.generate("calm piano", duration=1.0, seed=3)[0]
    assert levels["off"] == pytest.approx(loudness_db(raw.numpy()[0], SR), abs=0.05)  # the decoder's level
    assert levels["quiet"] == pytest.approx(-30.0, abs=0.1)
    assert (
        levels["default"] == pytest.approx(-20.0, abs=0.1) or np.abs(sf.read(tmp_path / "default.wav")[0]).max() > 0.98
    )
    # the rules: silence (under the -70 dB gate) stays as it is, a whisper (-63 dB) is raised at most
    # MAX_GAIN_DB, a peak never passes the ceiling
    t = torch.arange(SR) / SR
    assert loudness_gain([torch.zeros(1, SR)], SR, -20.0) == 1.0
    whisper = 1e-3 * torch.sin(2 * np.pi * 440 * t)[None]
    assert 20 * np.log10(loudness_gain([whisper], SR, -20.0)) == pytest.approx(MAX_GAIN_DB)
    click = torch.zeros(1, SR)
    click[0, 100] = 0.5
    assert loudness_gain([click[:, :4000], click[:, 4000:]], SR, -10.0) == pytest.approx(PEAK_CEILING / 0.5)


def test_mean_decode_plays_the_expected_latent_the_same_in_every_way_in(model_dir, tmp_path):
    """`decode="mean"`: each code the LM wrote decodes as the probability-weighted mean of its candidates'
    embeddings. Greedy puts all mass on the code drawn (the same audio as decoding the codes); sampled, the
    audio is that of `soft_latent`, window by window as one shot, and the CLI writes the same."""
    from musiclm.lm.generation import GenerationOptions, generate_tokens, soft_latent

    model = MusicLM.from_pretrained(model_dir)
    greedy = GenerationOptions(duration=1.0, seed=3, temperature=0)
    torch.testing.assert_close(
        model.generate("calm piano", greedy), model.generate("calm piano", replace(greedy, decode="mean"))
    )
    options = GenerationOptions(duration=1.0, seed=3, top_k=8, decode="mean")
    soft: dict = {}
    codes = generate_tokens(model, ["calm piano"], options, soft=soft)
    expected = model.codec.decode_latent(soft_latent(model.codec, soft), length=SR)
    mean = model.generate("calm piano", options)
    torch.testing.assert_close(mean, expected, atol=1e-5, rtol=1e-4)
    assert not torch.allclose(mean, model.codec.decode(codes, length=SR), atol=1e-3)
    assert torch.equal(codes, generate_tokens(model, ["calm piano"], replace(options, decode="sample")))
    args = ["--seed", "3", "--duration", "1", "--top-k", "8", "--loudness", "off", "--decode", "mean"]
    assert main(_cli(model_dir, "calm piano", *args, "-o", str(tmp_path / "m.wav"))) == 0
    written, _ = sf.read(tmp_path / "m.wav", dtype="int16")
    pcm = np.clip(np.floor(mean[0, 0].numpy().astype(np.float64) * 32768), -32768, 32767)
    assert np.abs(written - pcm).max() <= 1
    with pytest.raises(MusicLMError, match="decode"):
        GenerationOptions(decode="median").check()


def test_auto_decode_takes_the_mean_only_where_a_guide_is_kept(model_dir):
    """The default `decode="auto"`: the mean latent when a guide fixes the coarse codebooks, the codes drawn
    when the LM writes them all."""
    from musiclm.lm.generation import GenerationOptions, generate_for_decoding

    model = MusicLM.from_pretrained(model_dir)
    options = GenerationOptions(duration=1.0, seed=3, top_k=8)
    assert options.decode == "auto"
    _, unguided = generate_for_decoding(model, ["calm piano"], options)
    assert unguided == [None]
    frames = int(model.codec.frame_rate)
    guide = torch.randint(0, model.config.card, (1, 1, frames))
    codes, guided = generate_for_decoding(model, ["calm piano"], options, guide=guide)
    assert guided[0] is not None and guided[0].shape[-1] == codes.shape[-1]
    assert torch.equal(codes[:, :1], guide)
    _, drawn = generate_for_decoding(model, ["calm piano"], replace(options, decode="sample"), guide=guide)
    assert drawn == [None]
