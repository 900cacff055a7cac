"""Ship a codec and the LM trained on its tokens together, as the one consistent set under checkpoints/.

    python train/ship_pair.py --codec train/candidates/codec-cont-A3 --lm runs/lm-a3/export \\
        --lm-config runs/lm-a3/config.yaml --stage 7

The LM must have been trained on this codec's tokens: its export records the token space
(`codec_fingerprint`), and the pair is refused when the codec's fingerprint differs. The codec directory is
copied as it is (an fp16 export re-saved would keep its fingerprint, but a copy cannot change it); the LM is
written in fp16 with `codec: ../codec`. The previous LM stage configs stay beside it (the lineage), the
new one is added as `train_config_stage{N}.yaml`; the codec's `train_config.yaml` is replaced by the
candidate's. Run the test suite afterwards: tests/test_packaging.py checks the shipped pair matches.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from musiclm.codec import Codec  # noqa: E402
from musiclm.errors import MusicLMError  # noqa: E402
from musiclm.lm.model import MusicLM  # noqa: E402

CODEC_FILES = ("config.json", "model.safetensors", "train_config.yaml")


def ship(codec_dir: Path, lm_dir: Path, lm_config: Path | None, stage: int, out: Path) -> dict:
    codec = Codec.from_pretrained(codec_dir)
    lm = MusicLM.from_pretrained(lm_dir, load_codec=False)
    if lm.codec_fingerprint is None:
        raise MusicLMError(f"{lm_dir}: the LM records no codec_fingerprint; export it from a training run")
    if lm.codec_fingerprint != codec.fingerprint():
        raise MusicLMError(
            f"{lm_dir} was trained on tokens of codec {lm.codec_fingerprint}, {codec_dir} is {codec.fingerprint()}"
        )
    codec_out, lm_out = out / "codec", out / "musiclm"
    codec_out.mkdir(parents=True, exist_ok=True)
    for name in CODEC_FILES:
        src, dst = codec_dir / name, codec_out / name
        if src.is_file() and not (dst.exists() and src.resolve() == dst.resolve()):  # re-shipping an LM alone
            shutil.copyfile(src, dst)
    lm.save_pretrained(lm_out, codec_path="../codec", dtype=torch.float16)
    if lm_config is not None:
        shutil.copyfile(lm_config, lm_out / f"train_config_stage{stage}.yaml")
    # the loaded pair is what users get: it must load together and agree
    shipped = MusicLM.from_pretrained(lm_out)
    return {
        "codec": codec.config.name,
        "fingerprint": shipped.codec.fingerprint(),
        "lm": shipped.config.name,
        "lm_parameters": sum(p.numel() for p in shipped.parameters()),
        "out": str(out),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--codec", type=Path, required=True, help="codec export directory (save_pretrained)")
    p.add_argument("--lm", type=Path, required=True, help="LM export trained on that codec's tokens")
    p.add_argument("--lm-config", type=Path, help="the LM run's config.yaml, kept as train_config_stage{N}.yaml")
    p.add_argument("--stage", type=int, default=1, help="stage number of the LM run in the shipped lineage")
    p.add_argument("--out", type=Path, default=ROOT / "checkpoints", help="default: checkpoints/")
    args = p.parse_args(argv)
    try:
        print(json.dumps(ship(args.codec, args.lm, args.lm_config, args.stage, args.out), indent=2))
    except MusicLMError as e:
        print(f"ship_pair: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
