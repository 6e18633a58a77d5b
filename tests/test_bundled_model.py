"""The bundled toy model: it loads, is small, and finds the objects of fresh toy images."""

from pathlib import Path

import torch
from torchvision.ops import box_iou

from detr_core.analysis.capture import run_inference
from detr_core.checkpoint import load_model
from detr_core.data import ToyShapes

BUNDLED = Path(__file__).resolve().parents[1] / "checkpoints" / "toy_shapes.pt"


def test_bundled_checkpoint_is_small_and_loads():
    assert BUNDLED.stat().st_size <= 10 * 1024 * 1024
    model, ckpt = load_model(BUNDLED)
    assert ckpt.class_names == ["rectangle", "ellipse", "triangle"]
    assert ckpt.train_config is not None and ckpt.model_config.backbone == "tiny"


def test_finds_the_objects_of_fresh_toy_images():
    model, ckpt = load_model(BUNDLED)
    data = ToyShapes(ckpt.train_config.data, seed=987654, split="bundled-test")  # never seen in training
    found = total = false_alarms = 0
    for i in range(12):
        sample = data.sample(i)
        r = run_inference(model, sample.image, ckpt.class_names, capture=False)
        kept = r.kept(0.5)
        pred = r.boxes_xyxy[kept]
        gt = torch.from_numpy(sample.boxes_xyxy)
        iou = box_iou(gt, pred) if len(kept) else torch.zeros(len(gt), 0)
        same_class = torch.from_numpy(sample.labels)[:, None] == r.labels[kept][None, :]
        hit = ((iou >= 0.5) & same_class).any(1)
        found += int(hit.sum())
        total += len(gt)
        matched_preds = ((iou >= 0.5) & same_class).any(0)
        false_alarms += int((~matched_preds).sum())
    assert total >= 30
    assert found / total >= 0.9, (found, total)
    assert false_alarms <= 0.1 * total, (false_alarms, total)

