"""Captions → token ids (SentencePiece) → text memory the LM cross-attends to."""

from musiclm.text.encoder import TextConfig, build_text_encoder
from musiclm.text.tokenizer import TextTokenizer

__all__ = ["TextConfig", "TextTokenizer", "build_text_encoder"]
