"""What a file dropped on the page is, checked before any model sees it: its size against the limit, then
its kind by content (an .mlc or MIDI file by its magic bytes, audio by libsndfile), never by its name alone."""

from __future__ import annotations

from pathlib import Path

from musiclm.errors import MusicLMError

DEFAULT_MAX_UPLOAD_MB = 50.0
MB = 2**20  # what Gradio's upload limit counts in, so both checks agree
MLC_MAGIC = b"MLC\x1a"  # musiclm.codec.bitstream.MAGIC, without importing numpy and the codec for 4 bytes
MIDI_MAGIC = b"MThd"  # musiclm.notes.condition.MIDI_MAGIC, without importing torch for 4 bytes
AUDIO, MLC, MIDI = "audio", "mlc", "midi"


def check_size(path: str | Path, max_mb: float, name: str | None = None) -> int:
    """The file's size in bytes; MusicLMError above `max_mb` megabytes."""
    path = Path(path)
    name = name or path.name
    try:
        size = path.stat().st_size
    except OSError:
        raise MusicLMError(f"{name}: the upload did not arrive; try again") from None
    if size > max_mb * MB:
        raise MusicLMError(f"{name}: {size / MB:.1f} MB is over the upload limit of {max_mb:g} MB")
    if size == 0:
        raise MusicLMError(f"{name}: the file is empty")
    return size


def upload_kind(path: str | Path, allowed: tuple[str, ...], max_mb: float = DEFAULT_MAX_UPLOAD_MB) -> str:
    """AUDIO, MLC or MIDI, whichever of `allowed` the file is; MusicLMError (one line for the page) if it is
    too large, or none of them."""
    path = Path(path)
    check_size(path, max_mb)
    with open(path, "rb") as f:
        head = f.read(4)
    if head == MLC_MAGIC and MLC in allowed:
        return MLC
    if head == MIDI_MAGIC and MIDI in allowed:
        return MIDI
    if AUDIO in allowed and head not in (MLC_MAGIC, MIDI_MAGIC):
        import soundfile as sf

        try:
            info = sf.info(str(path))
        except Exception:  # libsndfile raises several types for "not audio"
            info = None
        if info is not None and info.frames > 0 and info.samplerate > 0:
            return AUDIO
    names = {AUDIO: "audio (wav, flac, ogg, mp3)", MLC: "an .mlc file", MIDI: "a MIDI file"}
    wanted = " or ".join(names[k] for k in allowed)
    raise MusicLMError(f"{path.name}: not {wanted} (or damaged); nothing was done")
