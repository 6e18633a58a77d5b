import os

# GUI tests run without a screen; set before any Qt import.
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(2)


@pytest.fixture
def one_thread():
    """For modules that mark themselves with it: one torch thread (the machine is shared)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def tiny_config():
    from detr_core.config import DETRConfig

    return DETRConfig(
        backbone="tiny", tiny_width=8, d_model=32, nheads=4, num_encoder_layers=1, num_decoder_layers=2,
        dim_feedforward=64, num_queries=8, num_classes=3, dropout=0.0, image_min_size=64, image_max_size=128,
    )
