"""Writing outputs safely: a file appears complete or not at all, never replaces a file it should not, and
a failure (an exception, a full disk, Ctrl-C, SIGTERM) leaves nothing behind.

    with AtomicOutput("song.mlc", replace=False) as out:   # a hidden part file beside song.mlc
        out.write(data)                                    # or let soundfile write to `out.part` by name
    # on success: fsync, then link(part, song.mlc) + unlink(part): the link fails if song.mlc appeared
    # meanwhile, so a file that shows up during a long run is never clobbered (rename would replace it)

    with StdoutOutput() as out: out.write(data)            # '-': errors are one line, nothing left to flush

Signals. Python raises KeyboardInterrupt wherever the main thread happens to be, and that can be Python code
called back from C++ (torch's import registers operators through Python): an exception there aborts the
process ("terminate called after throwing an instance of 'pybind11::error_already_set'") or leaves a module
half-imported. `deferred_signals()` (used by the CLI) records SIGINT and SIGTERM instead and raises
`Interrupted` at safe points, `check_interrupt()`, which the compressor calls between blocks and chunks; in
blocking reads and writes (`interruptible()`) and on a second signal it raises at once.
"""

from __future__ import annotations

import errno
import os
import secrets
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from musiclm.errors import MusicLMError

# errno values os.link gives where a filesystem cannot make hard links (FAT, some network and FUSE mounts)
_NO_HARD_LINKS = {errno.EPERM, errno.EOPNOTSUPP, errno.ENOTSUP, errno.EMLINK, errno.EXDEV, errno.ENOSYS}


def describe_os_error(e: OSError) -> str:
    """A short reason for an I/O error, in words a user acts on."""
    if e.errno == errno.ENOSPC:
        return "disk full (no space left on device)"
    if e.errno == errno.EDQUOT:
        return "disk full (quota exceeded)"
    return e.strerror or str(e) or type(e).__name__


# ---- files ---------------------------------------------------------------------------------------------
class AtomicOutput:
    """A hidden part file `.NAME.XXXXXXXX.part` beside `path`, published as `path` when the block succeeds
    and removed when it fails. `replace`: publish with os.replace (--force); otherwise a file at `path` is
    never replaced, even one created while writing. The mode is 0666 less the umask, as for any new file."""

    def __init__(self, path: str | Path, replace: bool = False):
        self.path = Path(path)
        self.replace = replace
        self.fd = -1
        self.part = ""

    def __enter__(self) -> AtomicOutput:
        folder = self.path.parent
        if folder.exists() and not folder.is_dir():
            raise MusicLMError(f"{self.path}: {folder} is not a folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
            while self.fd < 0:
                self.part = str(folder / f".{self.path.name}.{secrets.token_hex(4)}.part")
                try:
                    self.fd = os.open(self.part, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
                except FileExistsError:
                    continue
        except OSError as e:
            raise MusicLMError(f"{self.path}: cannot write here ({describe_os_error(e)})") from None
        return self

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view) :]
        except OSError as e:
            raise MusicLMError(f"{self.path}: {describe_os_error(e)}") from None
        return len(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                check_interrupt()
                try:
                    os.fsync(self.fd)
                    os.close(self.fd)
                    self.fd = -1
                    _publish(self.part, self.path, self.replace)
                except OSError as e:
                    raise MusicLMError(f"{self.path}: {describe_os_error(e)}") from None
        finally:
            if self.fd >= 0:
                os.close(self.fd)
                self.fd = -1
            try:
                os.unlink(self.part)
            except FileNotFoundError:
                pass


def _publish(part: str, dest: Path, replace: bool) -> None:
    if replace:
        os.replace(part, dest)
    else:
        try:
            os.link(part, dest)
        except FileExistsError:
            raise MusicLMError(
                f"{dest} appeared while it was being written; kept it (pass --force to overwrite it)"
            ) from None
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            raise MusicLMError(
                f"{dest}: this filesystem has no hard links, which writing without overwriting needs; "
                "pass --force to write it anyway"
            ) from None
    try:  # the new name is durable only once its folder is on disk too
        fd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass


@contextmanager
def atomic_path(path: str | Path, replace: bool = True) -> Iterator[str]:
    """The part file's name, for writers that open files by name (soundfile, safetensors, json)."""
    with AtomicOutput(path, replace) as out:
        yield out.part


# ---- stdout and stdin ------------------------------------------------------------------------------------
class StdoutOutput:
    """Binary stdout for '-'. A write or the final flush that fails (disk full, a closed pipe) becomes one
    MusicLMError (BrokenPipeError stays itself), and stdout is pointed at /dev/null, so the interpreter's own
    flush at exit has nothing to fail on ("Exception ignored ..." tracebacks)."""

    def __enter__(self) -> StdoutOutput:
        sys.stdout.flush()
        self.buffer = sys.stdout.buffer
        return self

    def write(self, data: bytes) -> int:
        view = memoryview(data)
        try:
            with interruptible():
                while view:  # a pipe whose reader left takes part of a write and returns the count
                    view = view[self.buffer.write(view) :]
        except OSError as e:
            self._fail(e)
        return len(data)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            with interruptible():
                self.buffer.flush()
        except OSError as e:
            if exc_type is None:
                self._fail(e)
            _silence_stdout()

    def _fail(self, e: OSError):
        _silence_stdout()
        if isinstance(e, BrokenPipeError):
            raise e
        raise MusicLMError(f"<stdout>: {describe_os_error(e)}") from None


def _silence_stdout() -> None:
    try:
        if sys.stdout.buffer.fileno() != 1:
            return
    except (AttributeError, OSError, ValueError):  # stdout replaced (tests capture it)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)


def read_stdin(size: int) -> bytes:
    """Up to `size` bytes of stdin (fewer only at its end); Ctrl-C interrupts the wait."""
    parts, got = [], 0
    with interruptible():
        while got < size:
            block = sys.stdin.buffer.read(size - got)
            if not block:
                break
            parts.append(block)
            got += len(block)
    return b"".join(parts)


# ---- signals ---------------------------------------------------------------------------------------------
class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM, raised at a safe point. `exit_code`: 128 + the signal's number (130, 143)."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


_pending: int | None = None  # a signal received outside `interruptible()`, not raised yet
_immediate = 0  # depth of `interruptible()` blocks


def _on_signal(signum: int, frame) -> None:
    global _pending
    if _immediate or _pending is not None:  # blocking I/O, or the user insists
        _pending = None
        raise Interrupted(signum)
    _pending = signum


def check_interrupt() -> None:
    """A safe point: raise `Interrupted` if a signal arrived since the last check."""
    global _pending
    if _pending is not None:
        signum, _pending = _pending, None
        raise Interrupted(signum)


@contextmanager
def interruptible() -> Iterator[None]:
    """A blocking read or write (no Python called back from C++ inside): a signal raises at once."""
    global _immediate
    check_interrupt()
    _immediate += 1
    try:
        yield
    finally:
        _immediate -= 1


@contextmanager
def deferred_signals() -> Iterator[None]:
    """SIGINT and SIGTERM become `Interrupted` at safe points in this block (main thread only; a signal the
    process ignores, as a background job ignores SIGINT, stays ignored)."""
    global _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    old = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) is not signal.SIG_IGN:
            old[signum] = signal.signal(signum, _on_signal)
    try:
        yield
        check_interrupt()
    finally:
        for signum, handler in old.items():
            signal.signal(signum, handler)
        _pending = None
