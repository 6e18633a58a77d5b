"""Record what four models compute, as the reference a restructuring of the model families is held to.

    uv run python tests/data/make_family_reference.py     # writes tests/data/family_reference.pt

The four: the bundled toy model (``checkpoints/``), a small deformable model (box refinement and
two-stage), a small Hugging Face DETR folder (made with ``transformers``) and a small official-format
``.pth`` file, each opened through :func:`detr_core.checkpoint.load_checkpoint`. For each, a raw
forward pass with capture on two images of different sizes (so padding masks matter) and
:func:`~detr_core.analysis.capture.run_inference` on one image; every output and every captured
attention or sampling tensor is recorded. ``tests/test_families.py`` recomputes them with the
current code and compares bit for bit (``torch.equal``).

Weights made here do not depend on the order in which a model creates its modules: every entry
of the state dict is drawn from one seeded generator in the order of its sorted name, so only the
names and shapes (which must not change) decide them. One thread, so reductions run in one order.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from dataclasses import fields, is_dataclass
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["HF_HUB_DISABLE_PROGRESS_BARS"] = "1"

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_checkpoint, save_checkpoint
from detr_core.config import DETRConfig
from detr_core.formats.reference import reference_payload
from detr_core.model.registry import build_model

REFERENCE = Path(__file__).with_name("family_reference.pt")
MODELS = ("bundled", "deformable", "hf", "official")
NAMES = ["rectangle", "ellipse", "triangle"]


def fill_by_name(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter and buffer, in sorted-name order, from one seeded generator
    (batch-norm variances positive)."""
    g = torch.Generator().manual_seed(seed)
    state = model.state_dict()
    with torch.no_grad():
        for name in sorted(state):
            t = state[name]
            if not t.is_floating_point():
                continue
            if "running_var" in name:
                t.copy_(torch.rand(t.shape, generator=g) + 0.5)
            else:
                t.copy_(torch.randn(t.shape, generator=g) * 0.2)


def deformable_config() -> DETRConfig:
    return DETRConfig(backbone="tiny", tiny_stride=32, tiny_width=8, d_model=64, nheads=2, num_encoder_layers=1,
                      num_decoder_layers=2, dim_feedforward=32, num_queries=5, num_classes=3, dropout=0.0,
                      classifier="focal", attention="deformable", with_box_refine=True, two_stage=True,
                      image_min_size=64, image_max_size=96)


def official_config() -> DETRConfig:
    return DETRConfig(backbone="resnet", resnet_depths=(1, 1, 2, 1), resnet_widths=(8, 16, 32, 48, 64),
                      pretrained_backbone=False, d_model=32, nheads=4, num_encoder_layers=1, num_decoder_layers=2,
                      dim_feedforward=48, num_queries=6, num_classes=3, dropout=0.0,
                      image_min_size=64, image_max_size=96)


def hf_folder(folder: Path) -> Path:
    """A small random ``DetrForObjectDetection`` saved with ``save_pretrained`` (needs ``transformers``)."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    torch.manual_seed(0)
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[16, 32, 48, 64], depths=[1, 2, 1, 1],
                            layer_type="bottleneck", out_features=["stage4"])
    config = DetrConfig(
        backbone_config=backbone, use_timm_backbone=False, use_pretrained_backbone=False, d_model=32,
        encoder_layers=1, decoder_layers=2, encoder_attention_heads=4, decoder_attention_heads=4,
        encoder_ffn_dim=48, decoder_ffn_dim=48, num_queries=6, num_labels=3, dropout=0.0,
        id2label={0: "cat", 1: "dog", 2: "bird"}, label2id={"cat": 0, "dog": 1, "bird": 2},
    )
    model = DetrForObjectDetection(config).eval()
    fill_by_name(model, 3)
    model.save_pretrained(folder)
    return folder


def open_model(name: str, folder: Path) -> tuple[torch.nn.Module, list[str]]:
    """The named model, opened from its file the way the app opens it."""
    if name == "bundled":
        ckpt = load_checkpoint(ROOT / "checkpoints" / "toy_shapes.pt")
    elif name == "deformable":
        model = build_model(deformable_config())
        fill_by_name(model, 1)
        ckpt = load_checkpoint(save_checkpoint(folder / "deformable.pt", model, NAMES))
    elif name == "hf":
        ckpt = load_checkpoint(hf_folder(folder / "hf"))
    else:
        model = build_model(official_config())
        fill_by_name(model, 2)
        ckpt = load_checkpoint(save_checkpoint(folder / "plain.pt", model, NAMES))
        torch.save(reference_payload(ckpt.model_config, ckpt.state_dict), folder / "official.pth")
        ckpt = load_checkpoint(folder / "official.pth")
    return ckpt.build_model().eval(), ckpt.class_names


def _flatten(prefix: str, value, out: dict[str, torch.Tensor]) -> None:
    """Every tensor inside ``value`` (tensors, lists, dicts, dataclasses) under a dotted name."""
    if isinstance(value, torch.Tensor):
        out[prefix] = value.detach().clone()
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _flatten(f"{prefix}.{i}", v, out)
    elif isinstance(value, dict):
        for k, v in value.items():
            _flatten(f"{prefix}.{k}", v, out)
    elif is_dataclass(value):
        for f in fields(value):
            _flatten(f"{prefix}.{f.name}", getattr(value, f.name), out)


def inputs() -> tuple[list[torch.Tensor], np.ndarray]:
    g = torch.Generator().manual_seed(5)
    images = [torch.randn(3, 64, 80, generator=g), torch.randn(3, 48, 64, generator=g)]
    image = (torch.rand(72, 90, 3, generator=g) * 255).to(torch.uint8).numpy()
    return images, image


def outputs(model: torch.nn.Module, class_names: list[str]) -> dict[str, torch.Tensor]:
    """Every tensor the model and its capture give for the fixed inputs, by name."""
    images, image = inputs()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with torch.no_grad():
            forward = model(images, capture=True)
        result = run_inference(model, image, class_names, input_tensor=images[0])  # small whatever the model's sizes
    finally:
        torch.set_num_threads(threads)
    out: dict[str, torch.Tensor] = {}
    for key in ("pred_logits", "pred_boxes", "aux_outputs", "enc_outputs"):
        if key in forward:
            _flatten(f"forward.{key}", forward[key], out)
    capture = forward["capture"]  # the capture protocol: its attention as the families captured it ...
    _flatten("forward.capture", capture.attention, out)
    for f in fields(capture):  # ... and the rest of it (layers, memory, extras)
        if f.name != "attention":
            _flatten(f"forward.protocol.{f.name}", getattr(capture, f.name), out)
    _flatten("inference", result, out)
    return out


def record() -> dict[str, dict[str, torch.Tensor]]:
    with tempfile.TemporaryDirectory() as tmp:
        return {name: outputs(*open_model(name, Path(tmp))) for name in MODELS}


def main() -> int:
    argparse.ArgumentParser(description=__doc__.splitlines()[0]).parse_args()
    reference = record()
    torch.save(reference, REFERENCE)
    for name, tensors in reference.items():
        print(f"{name}: {len(tensors)} tensors")
    print(f"wrote {REFERENCE} ({REFERENCE.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
