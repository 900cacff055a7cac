import os

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("WANDB_MODE", "offline")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def tiny_codec():
    """A randomly initialised codec small enough for any test (hop 8, 4 codebooks of 64)."""
    from musiclm.codec import Codec, CodecConfig, SEANetConfig

    torch.manual_seed(0)
    config = CodecConfig(
        name="tiny-test",
        sample_rate=8000,
        seanet=SEANetConfig(n_filters=4, dimension=16, ratios=(4, 2)),
        n_q=4,
        card=64,
        bandwidths=(6.0, 12.0, 24.0),
    )
    return Codec(config).eval()
