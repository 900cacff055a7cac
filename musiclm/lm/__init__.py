"""The token LM: delay pattern, text-conditioned model, sampling, generation options.

Exports load lazily, so `import musiclm.lm` stays cheap (no torch model code until a name is used).
"""

import importlib

_EXPORTS = {
    "apply_delay": "musiclm.lm.delay",
    "delay_valid_mask": "musiclm.lm.delay",
    "undo_delay": "musiclm.lm.delay",
    "LMConfig": "musiclm.lm.model",
    "MusicLM": "musiclm.lm.model",
    "GenerationOptions": "musiclm.lm.generation",
    "SamplingParams": "musiclm.lm.sample",
    "generate_codes": "musiclm.lm.sample",
}


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'musiclm.lm' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = list(_EXPORTS)
