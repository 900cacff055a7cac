"""musiclm: text → music with a learned RVQ codec and a token language model; also a neural audio compressor.

Data flow: audio → codec.encode → codes [B,K,T] → lm.generate → codes → codec.decode → audio.

    from musiclm import Codec, MusicLM
    model = MusicLM.from_pretrained()                 # the shipped model (with its codec)
    wav = model.generate(["calm piano in C major, slow"], duration=8, seed=1)   # [B, C, N]
    musiclm.compress("in.wav", "out.mlc", bandwidth=6.0); musiclm.decompress("out.mlc", "back.wav")
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from musiclm import compress as _compress_api  # light: its modules load on first use (see `compress` below)
from musiclm.errors import MusicLMError

if TYPE_CHECKING:
    from musiclm.codec.search import SearchSettings

__version__ = "0.1.0"

# Heavy modules load on first use, so `import musiclm` (and the CLI's --help) stays fast.
_LAZY = {
    "Codec": ("musiclm.codec", "Codec"),
    "CodecConfig": ("musiclm.codec", "CodecConfig"),
    "MusicLM": ("musiclm.lm", "MusicLM"),
    "SearchSettings": ("musiclm.codec.search", "SearchSettings"),
    "decompress": ("musiclm.compress", "decompress"),
    "compress_bytes": ("musiclm.compress", "compress_bytes"),
    "decompress_bytes": ("musiclm.compress", "decompress_bytes"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'musiclm' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    return getattr(importlib.import_module(module_name), attr)


# `musiclm.compress(...)` is this function, while `musiclm.compress` the package holds the API
# (`from musiclm.compress import decompress`). Importing a submodule binds its name on the parent, once, the
# first time; the package was imported above, so this definition is the one that stays.
def compress(
    source,
    destination,
    codec=None,
    bandwidth: float | None = None,
    entropy: bool | None = None,
    mono: bool = False,
    force: bool = False,
    chunk_seconds: float = _compress_api.CHUNK_SECONDS,
    progress: bool | None = None,
    search: SearchSettings | None = None,
    band_gains: bool | None = None,
):
    """Compress an audio file to .mlc: `musiclm.compress.compress` (see there)."""
    from musiclm.compress.encode import compress as run

    return run(source, destination, codec, bandwidth, entropy, mono, force, chunk_seconds, progress, search, band_gains)


__all__ = ["MusicLMError", "__version__", "compress", *_LAZY]
