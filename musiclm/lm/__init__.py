"""The token LM: delay pattern, transformer with KV cache, text-conditioned model, sampling.

Exports load lazily: `musiclm.text` builds on `musiclm.lm.transformer`, and `musiclm.lm.model` on
`musiclm.text`, so importing this package must not import the model eagerly.
"""

import importlib

_EXPORTS = {
    "apply_delay": "musiclm.lm.delay",
    "delay_valid_mask": "musiclm.lm.delay",
    "undo_delay": "musiclm.lm.delay",
    "LMConfig": "musiclm.lm.model",
    "MusicLM": "musiclm.lm.model",
    "SamplingParams": "musiclm.lm.sample",
    "generate_codes": "musiclm.lm.sample",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'musiclm.lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = list(_EXPORTS)
