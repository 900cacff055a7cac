"""Outputs that never lose a file: no clobbering, the umask's mode, nothing left behind on errors or signals,
a full disk or a full stdout in one line, Ctrl-C and SIGTERM at any moment in one line."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from test_compress import assert_one_line_error, cli, music_like, tiny_codec

from musiclm import files
from musiclm.audio import save_audio
from musiclm.cli import main
from musiclm.codec import bitstream
from musiclm.compress import compress
from musiclm.errors import MusicLMError
from musiclm.files import AtomicOutput, Interrupted


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory) -> Path:
    return tiny_codec().save_pretrained(tmp_path_factory.mktemp("codec"))


@pytest.fixture
def wav(tmp_path) -> Path:
    sf.write(tmp_path / "in.wav", music_like(1.0, 24000, 1), 24000)
    return tmp_path / "in.wav"


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# ---- the atomic writer ---------------------------------------------------------------------------------
def test_a_file_that_appears_while_compressing_is_kept(capsys, tmp_path, codec_dir, wav, monkeypatch):
    """The existence check at the start is not enough: publishing must not replace a newcomer either."""
    out = tmp_path / "x.mlc"
    write_chunk = bitstream.write_chunk

    def meanwhile(*args):
        if not out.exists():
            out.write_bytes(b"precious")  # another program saves a file of that name during the run
        return write_chunk(*args)

    monkeypatch.setattr(bitstream, "write_chunk", meanwhile)
    rc, err = cli(capsys, "compress", wav, out, "--codec", codec_dir)
    assert_one_line_error(rc, err, "appeared while it was being written")
    assert out.read_bytes() == b"precious" and hidden(tmp_path) == []
    out.unlink()
    rc, err = cli(capsys, "compress", wav, out, "--codec", codec_dir, "--force")  # --force: replace it
    assert rc == 0 and bitstream.read_header(open(out, "rb")).orig_num_samples == 24000


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_umask_mode(tmp_path, codec_dir, wav, umask):
    old = os.umask(umask)
    try:
        compress(wav, tmp_path / "x.mlc", codec=codec_dir)
        assert main(["decompress", str(tmp_path / "x.mlc"), str(tmp_path / "y.flac"), "--codec", str(codec_dir)]) == 0
        save_audio(tmp_path / "z.wav", torch.zeros(1, 100), 8000)
    finally:
        os.umask(old)
    for name in ("x.mlc", "y.flac", "z.wav"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o666 & ~umask, name


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt(), Interrupted(signal.SIGTERM)])
def test_part_file_removed_on_any_exception(tmp_path, error):
    with pytest.raises(type(error)), AtomicOutput(tmp_path / "out.bin") as out:
        out.write(b"half")
        assert hidden(tmp_path) and Path(out.part).read_bytes() == b"half"
        raise error
    assert os.listdir(tmp_path) == []


def test_no_hard_links_is_a_clear_error(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with pytest.raises(MusicLMError, match="no hard links.*--force"), AtomicOutput(tmp_path / "o") as out:
        out.write(b"data")
    assert os.listdir(tmp_path) == []
    with AtomicOutput(tmp_path / "o", replace=True) as out:  # --force publishes with rename
        out.write(b"data")
    assert os.listdir(tmp_path) == ["o"]


@pytest.mark.parametrize("command, output", [("compress", "x.mlc"), ("decompress", "y.wav")])
def test_disk_full_is_one_line_and_leaves_nothing(capsys, tmp_path, codec_dir, wav, monkeypatch, command, output):
    compress(wav, tmp_path / "in.mlc", codec=codec_dir)
    source = wav if command == "compress" else tmp_path / "in.mlc"
    written, real_write = [], os.write

    def full_disk(fd, data):  # the disk fills a little way into the output (a tiny tmpfs cannot be made here)
        if not os.readlink(f"/proc/self/fd/{fd}").startswith(str(tmp_path)):
            return real_write(fd, data)
        if written:  # the header went in; the first chunk does not fit
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(len(data))
        return len(data)

    monkeypatch.setattr(os, "write", full_disk)
    rc, err = cli(capsys, command, source, tmp_path / output, "--codec", codec_dir)
    assert_one_line_error(rc, err, f"{tmp_path / output}: disk full")
    assert not (tmp_path / output).exists() and hidden(tmp_path) == []


# ---- signals -----------------------------------------------------------------------------------------------
def test_signals_wait_for_a_safe_point_except_in_blocking_io():
    # in a fresh interpreter whose SIGINT is not ignored: `deferred_signals` rightly leaves an ignored SIGINT
    # ignored, and a suite started in the background (`make test &`, nohup) runs with SIGINT ignored, which
    # exec passes on to children; that, not the suite, made this fail in background runs only
    script = """
import os, signal, time
from musiclm.files import Interrupted, check_interrupt, deferred_signals, interruptible
before = signal.getsignal(signal.SIGINT)
with deferred_signals():
    os.kill(os.getpid(), signal.SIGINT)
    time.sleep(0.05)  # the handler has run: it only took note
    try:
        check_interrupt()
        raise SystemExit("SIGINT was not deferred to check_interrupt")
    except Interrupted as e:
        assert e.exit_code == 130, e.exit_code
    try:
        with interruptible():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)
        raise SystemExit("SIGTERM did not interrupt a blocking wait")
    except Interrupted as e:
        assert e.exit_code == 143, e.exit_code
assert signal.getsignal(signal.SIGINT) is before
"""
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # as a terminal's foreground job
    )
    assert proc.returncode == 0, proc.stderr[-2000:]


ENV = {**os.environ, "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
CLI = [sys.executable, "-m", "musiclm.cli"]


def spawn(args: list, **kwargs) -> subprocess.Popen:
    """A real `musiclm` process that takes SIGINT as a terminal's Ctrl-C does (not ignored as in a background
    job)."""
    return subprocess.Popen(
        CLI + [str(a) for a in args],
        env=ENV,
        stderr=subprocess.PIPE,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        **kwargs,
    )


@pytest.mark.slow
def test_sigterm_while_compressing_leaves_no_part_file(tmp_path, codec_dir):
    sf.write(tmp_path / "long.wav", music_like(120.0, 24000, 2), 24000)
    proc = spawn(["compress", tmp_path / "long.wav", tmp_path / "x.mlc", "--codec", codec_dir, "-q"])
    deadline = time.monotonic() + 300
    while not hidden(tmp_path) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hidden(tmp_path), "the part file never appeared"
    proc.send_signal(signal.SIGTERM)
    err = proc.communicate(timeout=300)[1].decode()
    assert proc.returncode == 143 and err == "musiclm: terminated\n", err
    assert sorted(os.listdir(tmp_path)) == ["long.wav"]


# `musiclm compress` alone: the full CLI first imports every command module, and any that imports torch
# while registering its options is outside compress's hands
COMPRESS_ONLY = """
import argparse, sys
from musiclm.commands import compress as c
p = argparse.ArgumentParser()
c.register(p.add_subparsers())
a = p.parse_args()
try:
    sys.exit(a.func(a))
except KeyboardInterrupt:  # as musiclm.cli.main does
    sys.exit(print("musiclm: interrupted", file=sys.stderr) or 130)
"""


def handles_sigterm(pid: int) -> bool:
    """Whether the process has installed its SIGTERM handler (bit 15 - 1 of SigCgt in /proc/PID/status)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:")).split()[1], 16)
    return bool(caught >> (signal.SIGTERM - 1) & 1)


@pytest.mark.slow
def test_ctrl_c_at_any_moment_of_start_up_is_one_line(tmp_path, codec_dir):
    """SIGINT while torch and scipy import and the codec loads used to leave half-imported modules
    (RecursionError tracebacks) or abort in C++; now it waits for a safe point: rc 130, one line. The delays
    count from the moment the command takes over the signals (a loaded machine may take seconds to get
    there), so they land in the imports, the codec load and the encoding."""
    sf.write(tmp_path / "in.wav", music_like(30.0, 24000, 2), 24000)
    args = ["compress", tmp_path / "in.wav", tmp_path / "x.mlc", "--codec", codec_dir, "-q"]
    for delay in (0.0, 0.1, 0.3, 0.6, 1.0, 1.5, 2.5):
        proc = subprocess.Popen(
            [sys.executable, "-c", COMPRESS_ONLY, *map(str, args)],
            env=ENV,
            stderr=subprocess.PIPE,
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        deadline = time.monotonic() + 300
        while proc.poll() is None and not handles_sigterm(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        err = proc.communicate(timeout=300)[1].decode()
        if proc.returncode == 0:  # finished before the signal: nothing to see
            (tmp_path / "x.mlc").unlink()
            continue
        assert proc.returncode == 130 and err == "musiclm: interrupted\n", (delay, proc.returncode, err[-2000:])
        assert sorted(os.listdir(tmp_path)) == ["in.wav"], delay


# ---- stdout ----------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("command", ["compress", "decompress"])
def test_stdout_on_a_full_device_is_one_line(tmp_path, codec_dir, command):
    sf.write(tmp_path / "in.wav", music_like(3.0, 44100, 2), 44100)
    compress(tmp_path / "in.wav", tmp_path / "in.mlc", codec=codec_dir)
    source = tmp_path / ("in.wav" if command == "compress" else "in.mlc")
    with open("/dev/full", "wb") as full:
        proc = subprocess.run(
            CLI + [command, str(source), "-", "--codec", str(codec_dir)], stdout=full, stderr=subprocess.PIPE, env=ENV
        )
    err = proc.stderr.decode()
    assert proc.returncode == 2 and err == "musiclm: error: <stdout>: disk full (no space left on device)\n", err


@pytest.mark.slow
def test_stdout_reader_going_away_is_quiet(tmp_path, codec_dir):
    sf.write(tmp_path / "in.wav", music_like(3.0, 44100, 2), 44100)
    compress(tmp_path / "in.wav", tmp_path / "in.mlc", codec=codec_dir)
    proc = spawn(["decompress", tmp_path / "in.mlc", "-", "--codec", codec_dir], stdout=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()  # `| head -c 100`
    err = proc.stderr.read().decode()
    proc.wait(timeout=60)
    assert proc.returncode == 1 and "Exception ignored" not in err and "Traceback" not in err, (proc.returncode, err)


def test_writing_an_mp3_name_with_another_format_is_refused(tmp_path):
    with pytest.raises(MusicLMError, match="the name says MP3"):
        save_audio(tmp_path / "out.mp3", torch.zeros(1, 100), 8000, format="wav")
    save_audio(tmp_path / "out.flac", torch.from_numpy(np.zeros((1, 100), np.float32)), 8000, format="flac")
    assert sf.info(str(tmp_path / "out.flac")).format == "FLAC" and hidden(tmp_path) == []


def test_atomic_path_keeps_old_callers_working(tmp_path):
    """`musiclm.audio.atomic_write` (data modules) writes by name and replaces, with the umask's mode."""
    from musiclm.audio import atomic_write

    (tmp_path / "m.json").write_text("old")
    with atomic_write(tmp_path / "m.json") as part, open(part, "w") as f:
        f.write("new")
    assert (tmp_path / "m.json").read_text() == "new" and hidden(tmp_path) == []
    assert files.describe_os_error(OSError(errno.ENOSPC, "x")).startswith("disk full")
