"""Limits on generation requests, in a module without torch so the CLI can state them in `--help` cheaply
(importing torch while the parser is built would also open a window where Ctrl-C gives a traceback)."""

MAX_DURATION = 3600.0  # seconds; generation is windowed and decoding bounded, this only stops typos (1e9)
MAX_SEED = 2**64  # what torch.Generator.manual_seed takes
# How the LM's codes become audio (`GenerationOptions.decode`): the codes drawn, or each drawn cell's mean
# embedding over the codes it could have drawn (`musiclm.lm.generation.soft_latent`), or "auto": the mean where
# a guide fixes the coarse codebooks, the codes drawn where the LM writes them all. On 100 guided prompts the
# mean was heard in the asked key 84 % of the time against 79 % (chroma), tempo 78 % against 73 %; unguided, on
# 40, key 32.5 % against 47.5 % (checkpoints/README.md, "Plans heard through the codec").
DECODE_MODES = ("auto", "sample", "mean")
DEFAULT_DECODE = "auto"
