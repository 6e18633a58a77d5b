"""Missed-object diagnosis on the bundled toy checkpoint, on held-out images whose outcome is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from detr_core.analysis.capture import run_inference
from detr_core.data.toy import heldout_split
from detr_core.doctor.missed import diagnose_missed
from detr_core.doctor.report import markdown_report


@pytest.fixture(scope="module")
def model():
    from detr_core.checkpoint import load_model

    return load_model(Path(__file__).parents[1] / "checkpoints" / "toy_shapes.pt")[0]


def diagnose(model, index: int, labels=None, boxes=None, obj: int = 0):
    smp = heldout_split(size=2).sample(index)
    labels = smp.labels if labels is None else labels
    boxes = smp.boxes_xyxy if boxes is None else boxes
    result = run_inference(model, smp.image, ["rectangle", "ellipse", "triangle"])
    return diagnose_missed(result, labels, boxes, obj, classifier=model.config.classifier), smp


def test_found_objects_and_a_misplaced_triangle(model) -> None:
    d, _ = diagnose(model, 0)
    assert d.verdict == "detected" and d.layer_ious[-1] > 0.9 and d.attention_inside > 0.5
    d, _ = diagnose(model, 1, obj=4)  # the model's box on this small triangle reaches IoU 0.35
    assert d.verdict == "misplaced", d.explanation
    assert d.class_name == "triangle" and 0.2 < d.layer_ious[-1] < 0.5
    assert d.probs.shape == (4,) and d.layer_ious.shape == (model.config.num_decoder_layers,)
    assert d.attention is not None and d.attention.shape == (8, 8)
    assert "### Object 4 (triangle): misplaced" in markdown_report(missed=[d])


def test_wrong_class_and_nobody_looks(model) -> None:
    smp = heldout_split(size=1).sample(0)
    relabelled = smp.labels.copy()
    relabelled[0] = 1  # a triangle annotated as an ellipse: the query on it says triangle
    d, _ = diagnose(model, 0, labels=relabelled)
    assert d.verdict == "wrong_class" and "triangle" in d.explanation
    empty = np.vstack([smp.boxes_xyxy, [[2.0, 60.0, 30.0, 95.0]]]).astype(np.float32)  # background only
    d, _ = diagnose(model, 0, labels=np.append(smp.labels, 0), boxes=empty, obj=2)
    assert d.verdict == "nobody_looks", d.explanation
