"""The one exception type users see: bad input, unknown checkpoints, corrupt files."""


class MusicLMError(ValueError):
    """A user-facing error. The CLI prints its message on one line and exits non-zero."""
