"""The token LM: delay pattern, transformer with KV cache, text-conditioned model, sampling."""

from musiclm.lm.delay import apply_delay, delay_valid_mask, undo_delay
from musiclm.lm.model import LMConfig, MusicLM
from musiclm.lm.sample import SamplingParams, generate_codes

__all__ = ["LMConfig", "MusicLM", "SamplingParams", "apply_delay", "delay_valid_mask", "generate_codes", "undo_delay"]
