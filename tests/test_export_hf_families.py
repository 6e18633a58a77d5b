"""Every family wrapped from transformers (RT-DETR, RT-DETRv2, D-FINE, DEIMv2, Conditional DETR,
DAB-DETR, LW-DETR, RF-DETR) exports to ONNX, opened from a ``save_pretrained`` folder as the
command line opens it, and onnxruntime gives the eager model's detections to 1e-4 on a batch the
export's own check never saw; one family also as a ``torch.export`` program. Tiny random models
from the transformers test builders, at a 64 px input; nothing is downloaded."""

from __future__ import annotations

import dataclasses
import os
from importlib.util import find_spec

import pytest
import torch

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

transformers = pytest.importorskip("transformers")
pytestmark = [
    pytest.mark.usefixtures("one_thread"),  # conftest.py: tiny models, a shared machine
    pytest.mark.skipif(find_spec("onnxruntime") is None or find_spec("onnx") is None,
                       reason="onnx or onnxruntime is not installed (the optional extra: uv sync --extra onnx)"),
]
SLOW = os.environ.get("DETR_SLOW_TESTS") == "1"
SIZE = 64  # px: every family's tiny model has at least num_queries feature cells at it


def _tiny(family: str):
    """transformers' tiny random model of ``family``, from the families' own tests' builders."""
    from tests.test_hf_d_fine import tiny_d_fine
    from tests.test_hf_families import _dense_family, _rt_detr
    from tests.test_hf_lw_detr import DECODER, randomized, tiny_lw_detr

    if family in ("rt_detr", "rt_detr_v2"):
        return _rt_detr(1 if family == "rt_detr" else 2)
    if family in ("conditional_detr", "dab_detr"):
        return _dense_family(family)
    if family == "d_fine":
        return tiny_d_fine()
    if family == "deimv2":
        backbone = transformers.DINOv3ViTConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=3,
                                                num_attention_heads=2, patch_size=16, image_size=64,
                                                out_features=["stage1", "stage2", "stage3"])
        return tiny_d_fine("Deimv2Config", "Deimv2ForObjectDetection", backbone=backbone, use_gateway=False,
                           spatial_tuning_adapter_inplanes=8, encoder_in_channels=[32, 32, 32])
    if family == "lw_detr":
        return tiny_lw_detr()
    torch.manual_seed(0)
    backbone = transformers.RfDetrDinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                               mlp_ratio=2, patch_size=16, image_size=64, num_windows=2,
                                               out_features=["stage1", "stage2"])
    return randomized(transformers.RfDetrForObjectDetection(transformers.RfDetrConfig(backbone_config=backbone,
                                                                                      **DECODER)))


@pytest.fixture(scope="module")
def opened(tmp_path_factory):
    """family -> the model opened from its save_pretrained folder, its input SIZE x SIZE (built on first use)."""
    from detr_core.checkpoint import load_checkpoint

    models = {}

    def open_family(family: str):
        if family not in models:
            folder = tmp_path_factory.mktemp(family)
            _tiny(family).save_pretrained(folder)
            model = load_checkpoint(folder).build_model().eval()
            fixed = {"image_height": SIZE, "image_width": SIZE} if model.config.fixed_input_size else {}
            model.config = dataclasses.replace(model.config, image_min_size=SIZE, image_max_size=SIZE, **fixed)
            models[family] = model
        return models[family]

    return open_family


def _slow(family: str, why: str):
    return pytest.param(family, marks=pytest.mark.skipif(not SLOW, reason=f"{why}: DETR_SLOW_TESTS=1"))


# RT-DETR, whose export this file was written for, always; the others (2-5 s each) with
# DETR_SLOW_TESTS=1: the suite is at its time budget
FAMILIES = ["rt_detr"] + [_slow(f, "another wrapped family's ONNX round trip (2-5 s)") for f in (
    "rt_detr_v2", "d_fine", "deimv2", "conditional_detr", "dab_detr", "lw_detr")] + [
    _slow("rf_detr", "RF-DETR exports with the dynamo exporter only (some 15-45 s)")]


@pytest.mark.parametrize("family", FAMILIES)
def test_every_wrapped_family_exports_to_onnx_and_matches_its_model(opened, family, tmp_path):
    from detr_core.formats.agreement import TopkForced, matched_difference, pairwise
    from detr_core.formats.onnx import selection_outputs, write_onnx
    from detr_core.model.registry import traced_size_dynamic

    model = opened(family)
    out = tmp_path / f"{family}.onnx"
    done = write_onnx(model, out, ["cat", "dog", "bird"])
    assert done.difference <= 1e-4
    assert done.exporter == ("dynamo" if family == "rf_detr" else "torchscript")
    if not traced_size_dynamic(model.config):  # DEIMv2, LW-DETR, RF-DETR: their sizes are Python numbers
        assert done.size == (SIZE, SIZE)
    # a batch size and images the export's check never saw
    images = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(7))
    import onnxruntime

    data, extra = selection_outputs(out)  # the file's query selections as extra outputs
    logits, boxes, *selections = onnxruntime.InferenceSession(data).run(None, {"images": images.numpy()})
    with torch.no_grad(), TopkForced([torch.from_numpy(s) for s in selections if s.ndim == 2]):
        eager = model(images)  # (where the file broke a tie of scores the other way, its selection)
    assert logits.shape == tuple(eager["pred_logits"].shape) and boxes.shape == tuple(eager["pred_boxes"].shape)
    assert matched_difference([pairwise(torch.from_numpy(logits), eager["pred_logits"]),
                               pairwise(torch.from_numpy(boxes), eager["pred_boxes"])]) <= 1e-4


def test_rf_detr_is_refused_by_the_torchscript_exporter_by_name_before_tracing(opened, tmp_path):
    from detr_core.formats.onnx import write_onnx

    with pytest.raises(ValueError, match="cannot write RF-DETR: its DINOv2 backbone .* use the dynamo exporter"):
        write_onnx(opened("rf_detr"), tmp_path / "rf.onnx", exporter="torchscript")
    assert not (tmp_path / "rf.onnx").exists()


@pytest.mark.skipif(not SLOW, reason="torch.export of RT-DETR takes some 20 s: DETR_SLOW_TESTS=1")
def test_rt_detr_exports_as_a_torch_export_program(opened, tmp_path):
    from detr_core.formats.pt2 import write_pt2

    model = opened("rt_detr")
    out = tmp_path / "rt_detr.pt2"
    diff, size, batch = write_pt2(model, out)
    # transformers' forward takes len() of a tensor: torch.export keeps no batch dynamic
    assert diff <= 1e-4 and out.exists() and size == (SIZE, SIZE) and batch == 1
    program = torch.export.load(str(out)).module()
    images = torch.randn(1, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        logits, boxes = program(images)
        eager = model(images)
    assert logits.shape == eager["pred_logits"].shape and boxes.shape == eager["pred_boxes"].shape
