"""`musiclm serve`: the studio page driven in a real headless chromium (selenium + the system chromedriver), and
the checks it relies on (uploads, seeds, the core package staying free of gradio).

MUSICLM_STUDIO_SCREENSHOT=docs/studio.png .venv/bin/pytest tests/test_serve.py -k browser  refreshes README's
screenshot of the page.
"""

from __future__ import annotations

import os
import queue
import shutil
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from musiclm.errors import MusicLMError

START_TIMEOUT = 600  # seconds for the server to load the models: minutes on a loaded 2-core machine
JOB_TIMEOUT = 300


def test_core_package_does_not_import_gradio():
    code = "import sys, musiclm.cli, musiclm.web.studio; musiclm.cli.build_parser(); print('gradio' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip() == "False"


def test_upload_checks(tmp_path):
    from musiclm.web.uploads import AUDIO, MIDI, MLC, upload_kind

    wav = tmp_path / "a.wav"
    sf.write(wav, np.zeros(800, "float32"), 8000)
    assert upload_kind(wav, (AUDIO, MLC)) == AUDIO
    mlc = tmp_path / "song.wav"  # named .wav, holds .mlc bytes: the content decides
    mlc.write_bytes(b"MLC\x1a" + bytes(100))
    assert upload_kind(mlc, (AUDIO, MLC)) == MLC
    (tmp_path / "tune.mid").write_bytes(b"MThd" + bytes(20))
    assert upload_kind(tmp_path / "tune.mid", (AUDIO, MIDI)) == MIDI
    with pytest.raises(MusicLMError, match="not audio"):
        upload_kind(tmp_path / "tune.mid", (AUDIO, MLC))
    junk = tmp_path / "junk.wav"
    junk.write_bytes(os.urandom(5000))
    with pytest.raises(MusicLMError, match="junk.wav: not audio"):
        upload_kind(junk, (AUDIO, MLC))
    with pytest.raises(MusicLMError, match="over the upload limit of 0.001 MB"):
        upload_kind(junk, (AUDIO, MLC), max_mb=0.001)
    (tmp_path / "empty.wav").write_bytes(b"")
    with pytest.raises(MusicLMError, match="empty"):
        upload_kind(tmp_path / "empty.wav", (AUDIO,))


def test_seeds():
    from musiclm.web.studio import parse_seed

    assert parse_seed("42") == 42 and parse_seed(" 7 ") == 7
    drawn = {parse_seed("random") for _ in range(5)} | {parse_seed(""), parse_seed(None)}
    assert all(0 <= s < 2**31 for s in drawn) and len(drawn) > 1
    for bad in ("x", "-1", str(2**64), "1.5"):
        with pytest.raises(MusicLMError, match="seed"):
            parse_seed(bad)


@pytest.mark.slow
def test_studio_generate_and_melody_on_a_text_only_model(tmp_path):
    from test_lm_model import debug_model_dir

    from musiclm.web.studio import Studio

    studio = Studio(model=debug_model_dir(tmp_path / "text", 8000), work_dir=tmp_path / "work")
    assert not studio.takes_notes()
    (tmp_path / "tune.mid").write_bytes(b"MThd" + bytes(20))
    job = studio.generate("calm piano", duration=0.2, seed="3", melody=tmp_path / "tune.mid")
    assert job.seed == 3 and job.midi is None and abs(job.seconds - 0.2) < 1e-6
    assert "melody was not used" in job.notes[0]
    again = studio.generate("calm piano", duration=0.2, seed=3)
    assert sf.read(again.wav)[0].tolist() == sf.read(job.wav)[0].tolist(), "same seed, same audio"
    from musiclm.data.analysis import loudness_db
    from musiclm.generate import DEFAULT_LOUDNESS_DB, PEAK_CEILING

    audio = sf.read(job.wav)[0]  # at the level `musiclm generate` writes, or as loud as it goes unclipped
    assert loudness_db(audio, 8000) == pytest.approx(DEFAULT_LOUDNESS_DB, abs=0.1) or abs(audio).max() > 0.98
    assert abs(audio).max() <= PEAK_CEILING + 1e-4
    with pytest.raises(MusicLMError, match="type a prompt"):
        studio.generate("  ", duration=1)


@pytest.mark.slow
def test_studio_plays_a_plan_or_a_midi_melody_with_a_note_conditioned_model(tmp_path):
    from symusic import Note, Score, Tempo, Track
    from test_lm_model import debug_model_dir

    from musiclm.notes.midi import load_midi, note_array, save_midi
    from musiclm.web.studio import Studio

    studio = Studio(model=debug_model_dir(tmp_path / "notes", 8000, note_features=48), work_dir=tmp_path / "work")
    assert studio.takes_notes()
    planned = studio.generate("a slow chorale for strings in D minor", duration=1.0, seed=3)
    assert planned.midi is not None and len(note_array(load_midi(planned.midi))) > 0  # the plan, downloadable
    score = Score(480)
    score.tempos.append(Tempo(0, qpm=120.0))
    track = Track("tune", 0, False)
    track.notes.extend([Note(0, 480, 60, 80), Note(480, 480, 67, 80)])
    score.tracks.append(track)
    tune = save_midi(score, tmp_path / "tune.mid")
    arranged = studio.generate("a slow chorale for strings in D minor", duration=1.0, seed=3, melody=tune)
    assert list(note_array(load_midi(arranged.midi))[:, 2]) == [60, 67]  # the melody's notes, not a plan
    assert sf.read(arranged.wav)[0].tolist() != sf.read(planned.wav)[0].tolist()


def test_serve_refuses_bad_arguments(capsys):
    from musiclm.cli import main

    assert main(["serve", "--port", "0"]) == 2
    assert main(["serve", "--model", "/nonexistent/model"]) == 2
    err = capsys.readouterr().err
    assert "--port must be in 1..65535" in err and "no such directory" in err


# --- the page in a browser ---------------------------------------------------------------------------------


def _browser_missing() -> str | None:
    for module in ("gradio", "selenium"):
        try:
            __import__(module)
        except ImportError:
            return f"{module} not installed (the [web] extra: make install)"
    if not (shutil.which("chromium") or shutil.which("chromium-browser")):
        return "chromium not installed (make system-deps: apt-get install chromium)"
    if not shutil.which("chromedriver"):
        return "chromedriver not installed (make system-deps: apt-get install chromium-driver)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def studio_url(tmp_path_factory):
    """`musiclm serve` in a subprocess on a free port, uploads capped at 1 MB; its URL once it listens."""
    port = _free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio"))}
    cmd = [sys.executable, "-m", "musiclm.cli", "serve", "--port", str(port), "--max-upload-mb", "1"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stdout], daemon=True).start()
    log, url, deadline = [], None, time.monotonic() + START_TIMEOUT
    while url is None and time.monotonic() < deadline and proc.poll() is None:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        log.append(line)
        if line.startswith("musiclm studio: "):
            url = line.split()[2]
    if url is None:
        proc.kill()
        pytest.fail("the studio did not start:\n" + "".join(log))
    assert url == f"http://127.0.0.1:{port}/", "listens on loopback by default"
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = shutil.which("chromium") or shutil.which("chromium-browser")
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1400,1000",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    yield driver
    driver.quit()


def _wait(driver, condition, timeout=JOB_TIMEOUT):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.5).until(condition)


def _find(driver, css):
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, css)


def _playable_seconds(driver, href: str) -> float:
    """Chromium loads `href` as audio and returns its duration (fails if it cannot decode it)."""
    script = """
        const done = arguments[arguments.length - 1];
        const a = new Audio(arguments[0]);
        a.onloadedmetadata = () => done(a.duration);
        a.onerror = () => done(-1);
    """
    driver.set_script_timeout(60)
    return driver.execute_async_script(script, href)


def _toast(driver, text: str) -> str:
    """Wait for an error message containing `text` on the page."""
    from selenium.common.exceptions import StaleElementReferenceException

    def shown(d):
        try:
            return next((e.text for e in _find(d, ".toast-body") if text in e.text), None)
        except StaleElementReferenceException:  # a toast closed while being read
            return None

    return _wait(driver, shown, 60)


def _upload(driver, path: Path) -> None:
    for clear in _find(driver, "#compress-in button[aria-label='Clear']"):
        driver.execute_script("arguments[0].click()", clear)  # after a refused upload a drop zone covers it
    _wait(driver, lambda d: _find(d, "#compress-in input[type=file]"), 30)[0].send_keys(str(path))


@pytest.mark.slow
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_studio_in_browser(studio_url, browser, tmp_path):
    from selenium.webdriver.common.keys import Keys

    from musiclm.compress import read_info

    browser.get(studio_url)
    _wait(browser, lambda d: _find(d, "#prompt textarea"), 120)
    start = time.monotonic()

    # Generate: a prompt, 2 seconds, a random seed that the page then shows
    _find(browser, "#prompt textarea")[0].send_keys("calm piano in C major, slow")
    seconds = _find(browser, "#duration input[type=number]")[0]
    seconds.send_keys(Keys.CONTROL, "a")
    seconds.send_keys("2", Keys.TAB)
    _find(browser, "#generate-btn")[0].click()
    link = "#gen-audio a[download]"
    href = _wait(browser, lambda d: next((a.get_attribute("href") for a in _find(d, link)), None))
    assert href.endswith(".wav")
    assert abs(_playable_seconds(browser, href) - 2.0) < 0.05
    info = _find(browser, "#gen-info")[0].text
    assert info.startswith("seed ") and "2.0 s of audio" in info
    _find(browser, "#reuse-seed")[0].click()
    seed = info.split()[1]
    _wait(browser, lambda d: _find(d, "#seed textarea")[0].get_attribute("value") == seed, 30)
    time.sleep(2)  # let the player draw its waveform
    shot = tmp_path / "studio.png"
    browser.save_screenshot(str(shot))
    if os.environ.get("MUSICLM_STUDIO_SCREENSHOT"):
        shutil.copyfile(shot, os.environ["MUSICLM_STUDIO_SCREENSHOT"])
    import matplotlib.image

    pixels = matplotlib.image.imread(shot)  # [H, W, 3 or 4] floats in [0, 1]
    assert pixels.shape[0] > 500 and pixels[..., :3].std() > 0.05, "screenshot is blank"

    # Compress: a WAV in, an .mlc out (and it is one), the decoded audio playable
    [tab] = [b for b in _find(browser, "button[role=tab]") if b.text.strip() == "Compress"]
    tab.click()
    t = np.arange(3 * 24000) / 24000
    tone = 0.3 * np.sin(2 * np.pi * 440 * t) * (1 + np.sin(2 * np.pi * 2 * t)) / 2
    sf.write(tmp_path / "tone.wav", np.stack([tone, 0.5 * tone], 1).astype("float32"), 24000)
    _upload(browser, tmp_path / "tone.wav")
    links = "#compress-out a"
    mlc = _wait(
        browser,
        lambda d: next((h for a in _find(d, links) if (h := a.get_attribute("href") or "").endswith(".mlc")), None),
    )
    data = urllib.request.urlopen(mlc, timeout=60).read()
    header = read_info(data, verify=True)
    assert header.orig_channels == 2 and abs(header.duration - 3.0) < 0.05
    assert "kbps" in _find(browser, "#compress-info")[0].text
    decoded = _wait(
        browser, lambda d: next((a.get_attribute("href") for a in _find(d, "#mlc-audio a[download]")), None)
    )
    assert abs(_playable_seconds(browser, decoded) - 3.0) < 0.05

    # A corrupt file and one over the 1 MB limit: a message on the page, and the server keeps serving
    (tmp_path / "corrupt.wav").write_bytes(os.urandom(5000))
    _upload(browser, tmp_path / "corrupt.wav")
    assert "corrupt.wav: not audio" in _toast(browser, "corrupt.wav")
    (tmp_path / "big.wav").write_bytes(os.urandom(1_500_000))
    _upload(browser, tmp_path / "big.wav")
    assert "big.wav" in _toast(browser, "exceed the maximum allowed size")
    assert urllib.request.urlopen(studio_url, timeout=30).status == 200
    shutil.copyfile(tmp_path / "tone.wav", tmp_path / "again.wav")
    _upload(browser, tmp_path / "again.wav")  # and still works
    _wait(browser, lambda d: "again.mlc" in _find(d, "#compress-info")[0].text)
    print(f"browser part took {time.monotonic() - start:.1f} s")
