"""Limits on generation requests, in a module without torch so the CLI can state them in `--help` cheaply
(importing torch while the parser is built would also open a window where Ctrl-C gives a traceback)."""

MAX_DURATION = 3600.0  # seconds; generation is windowed and decoding bounded, this only stops typos (1e9)
MAX_SEED = 2**64  # what torch.Generator.manual_seed takes
# How the LM's codes become audio (`GenerationOptions.decode`): the codes drawn, or each drawn cell's mean
# embedding over the codes it could have drawn (`musiclm.lm.generation.soft_latent`).
DECODE_MODES = ("sample", "mean")
DEFAULT_DECODE = "sample"
