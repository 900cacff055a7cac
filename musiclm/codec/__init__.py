"""The audio tokenizer: wav [B, C, N] → codes [B, K, T] → wav."""

from musiclm.codec.model import Codec, CodecConfig
from musiclm.codec.seanet import SEANetConfig

__all__ = ["Codec", "CodecConfig", "SEANetConfig"]
