"""musiclm: text → music with a learned RVQ codec and a token language model; also a neural audio compressor.

Data flow: audio → codec.encode → codes [B,K,T] → lm.generate → codes → codec.decode → audio.

    from musiclm import Codec, MusicLM
    model = MusicLM.from_pretrained()                 # the shipped model (with its codec)
    wav = model.generate(["calm piano in C major, slow"], duration=8, seed=1)   # [B, C, N]
    musiclm.compress("in.wav", "out.mlc", bandwidth=6.0); musiclm.decompress("out.mlc", "back.wav")
"""

from __future__ import annotations

import importlib

from musiclm.errors import MusicLMError

__version__ = "0.1.0"

# Heavy modules load on first use, so `import musiclm` (and the CLI's --help) stays fast.
_LAZY = {
    "Codec": ("musiclm.codec", "Codec"),
    "CodecConfig": ("musiclm.codec", "CodecConfig"),
    "MusicLM": ("musiclm.lm", "MusicLM"),
    "compress": ("musiclm.compress", None),  # a callable module: musiclm.compress(src, dst, ...)
    "decompress": ("musiclm.compress", "decompress"),
    "compress_bytes": ("musiclm.compress", "compress_bytes"),
    "decompress_bytes": ("musiclm.compress", "decompress_bytes"),
}


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'musiclm' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)


__all__ = ["MusicLMError", "__version__", *_LAZY]
