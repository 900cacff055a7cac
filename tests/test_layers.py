"""Import layers (issue 13): `text` and `lm` share the transformer blocks of `musiclm.nn` (no cycle: the LM
uses the text encoder, never the reverse); the LM never reaches up into the Python API (`musiclm.generate`)
or the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import musiclm

PACKAGE = Path(musiclm.__file__).parent


def imports(folder: str) -> dict[str, set[str]]:
    """{file: every module it imports, at the top or inside a function}."""
    found = {}
    for path in sorted((PACKAGE / folder).glob("*.py")):
        names = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                names.add(node.module)
            elif isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
        found[f"{folder}/{path.name}"] = names
    return found


def _offending(folder: str, forbidden: tuple[str, ...]) -> dict[str, list[str]]:
    bad = {}
    for file, names in imports(folder).items():
        hits = sorted(n for n in names if n.startswith(forbidden))
        if hits:
            bad[file] = hits
    return bad


def test_text_does_not_import_lm():
    """The LM builds on the text encoder; the text encoder builds on musiclm.nn, never on the LM."""
    assert _offending("text", ("musiclm.lm",)) == {}


def test_nn_is_below_text_and_lm():
    assert _offending("nn", ("musiclm.lm", "musiclm.text", "musiclm.codec", "musiclm.generate")) == {}


def test_lm_does_not_reach_up_into_the_api_or_the_cli():
    assert _offending("lm", ("musiclm.generate", "musiclm.commands", "musiclm.cli")) == {}
