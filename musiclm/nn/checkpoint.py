"""Model directories on disk: weights written with the umask's mode, and a directory from strangers checked
(its config.json against model.safetensors) before anything is built from it.

The safetensors header holds every tensor's name and shape; `read_shapes` reads it without loading a
tensor. The shapes a config implies come from the model built on the `meta` device (modules with shapes and
no storage), so a config asking for 10^6 codebooks or a width of 65536 is refused in milliseconds with one
line instead of a 19 GB allocation. Repeated blocks are counted first (`check_counts`): even on `meta`,
building 10^6 layers is minutes of Python.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
from torch import nn

from musiclm.errors import MusicLMError

Shapes = dict[str, tuple[int, ...]]


def read_shapes(weights: Path) -> Shapes:
    """model.safetensors → {name: shape} from its header alone."""
    from safetensors import safe_open

    if not weights.is_file():
        raise MusicLMError(f"{weights.parent}: missing {weights.name}")
    try:
        with safe_open(str(weights), framework="pt") as f:
            return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except Exception as e:  # safetensors raises several types for corrupt headers
        raise MusicLMError(f"{weights}: unreadable weights ({e})") from None


def new_file_mode() -> int:
    """The mode a newly created file gets here: 0666 less the process's umask."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def save_weights(state: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """`safetensors.torch.save_file`, then the mode any new file gets: safetensors (0.8) writes through a
    private temporary file and would leave the weights readable by their owner only (0600)."""
    from safetensors.torch import save_file

    save_file(state, str(path), metadata=metadata)
    os.chmod(path, new_file_mode())


def _disagree(weights: Path, what: str) -> MusicLMError:
    return MusicLMError(f"{weights.parent}: config.json disagrees with {weights.name}: {what}")


def indices(shapes: Shapes, prefix: str) -> int:
    """How many numbered children `prefix` has in the file ("blocks." → blocks.0., blocks.1., ...)."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.")
    return len({m.group(1) for k in shapes if (m := pattern.match(k))})


def check_counts(shapes: Shapes, weights: Path, wanted: Iterable[tuple[str, int, str]]) -> None:
    """(config field, the count it asks for, a numbered prefix in the file): refuse a count the file cannot
    hold, before a model is built. Each count is a lower bound on the numbered children under the prefix."""
    for field, count, prefix in wanted:
        held = indices(shapes, prefix)
        if count > held:
            raise _disagree(weights, f"{field} is {count} by the config, the file holds {held} ({prefix}N)")


@contextmanager
def _initialisers_skipped() -> Iterator[None]:
    """`torch.nn.init.*_` as no-ops while a model is built on `meta` (as transformers' `no_init_weights`):
    they would only fill tensors without storage, and the first one on `meta` imports torch's compiler
    stack (1-3 s), longer than the whole check."""
    names = [n for n in dir(nn.init) if n.endswith("_") and not n.startswith("_")]
    saved = {n: getattr(nn.init, n) for n in names}
    try:
        for n in names:
            setattr(nn.init, n, _keep)
        yield
    finally:
        for n, f in saved.items():
            setattr(nn.init, n, f)


def _keep(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
    return tensor


def check_shapes(build: Callable[[], nn.Module], shapes: Shapes, weights: Path, derived: tuple[str, ...] = ()) -> None:
    """Build the model on `meta` and compare its state dict with the file's header: every tensor present
    with the same shape and nothing extra. Names ending in one of `derived` may be absent (rebuilt on
    load)."""
    try:
        with torch.device("meta"), _initialisers_skipped():
            expected = {k: tuple(v.shape) for k, v in build().state_dict().items()}
    except (AssertionError, ValueError, TypeError, RuntimeError) as e:  # e.g. a width not divisible by heads
        raise MusicLMError(f"{weights.parent}: config.json describes no buildable model ({e})") from None
    for name, shape in expected.items():
        if name not in shapes:
            if not name.endswith(derived):
                raise _disagree(weights, f"the config needs {name} {list(shape)}, the file has none")
        elif shapes[name] != shape:
            raise _disagree(weights, f"{name} is {list(shapes[name])} in the file, {list(shape)} by the config")
    extra = sorted(set(shapes) - set(expected))
    if extra:
        raise _disagree(
            weights, f"the file holds {extra[0]} {list(shapes[extra[0]])}, which the config has no place for"
        )


def read_config_json(directory: Path, kind: str = "model") -> dict:
    """DIRECTORY/config.json as a dict, or one clear MusicLMError: no such file, invalid JSON, not an object.
    `kind` names what the directory should be ("codec", "planner") in the message."""
    import json

    config_path = Path(directory) / "config.json"
    if not config_path.is_file():
        raise MusicLMError(f"{directory}: not a {kind} directory (no config.json)")
    try:
        meta = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise MusicLMError(f"{config_path}: invalid JSON ({e})") from None
    if not isinstance(meta, dict):
        raise MusicLMError(f"{config_path}: expected a JSON object")
    return meta
