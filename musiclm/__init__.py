"""musiclm: text → music with a learned RVQ codec and a token language model.

Data flow: audio → codec.encode → codes [B,K,T] → lm.generate → codes → codec.decode → audio.
"""

from musiclm.errors import MusicLMError

__version__ = "0.1.0"

__all__ = ["MusicLMError", "__version__"]
