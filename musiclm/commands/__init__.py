"""Subcommands of the `musiclm` CLI, one module each (see musiclm.cli)."""
