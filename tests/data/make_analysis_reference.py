"""Record what the analyses computed when each existed twice (a toy twin and a dataset twin), as
the reference the one analysis path over ``DetectionDataset`` is held to.

    uv run python tests/data/make_analysis_reference.py [--rev c65b91c] > tests/data/analysis_reference.json

``git archive`` exports ``detr_core`` of the given revision (by default the last one with the
twins: ``evaluate_model`` / ``evaluate_on``, ``layerwise_ap`` / ``layerwise_ap_on``,
``count_objects`` / ``count_dataset``, ``match_sample`` / ``match_toy_sample``) to a temporary
folder and runs them there on one thread, with the bundled toy model: on 60 held-out toy images,
on crowded toy images drawn with 1, 4 and 9 objects, on toy training samples, and on a small COCO
and VOC folder written by ``write_toy_dataset`` (6 validation images each). The AP figures,
per-layer AP, counts and Hungarian assignments are recorded. ``tests/test_analysis_reference.py``
computes the same with the current code and compares.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TOY_IMAGES = 60  # enough that rounding the submitted boxes to 0.01 px would move the AP
COUNTS = [1, 4, 9]
IMAGES_PER_COUNT = 2
MATCHED_SAMPLES = [0, 1, 2]
FOLDER_VAL_IMAGES = 6


def folder(root: Path, fmt: str, model):
    """The val split of a small ``fmt`` folder of toy images, resized as ``model`` infers."""
    from detr_core.data.export import write_toy_dataset
    from detr_core.data.sources import open_dataset
    from detr_core.data.transforms import eval_transform

    path = write_toy_dataset(root / fmt, train=1, val=FOLDER_VAL_IMAGES, fmt=fmt)
    cfg = model.config
    return open_dataset(f"{fmt}:{path}", role="val").with_transform(eval_transform(cfg.image_min_size,
                                                                                   cfg.image_max_size))


def counting_rows(result) -> dict:
    return {"rows": [[r.asked, r.true_count, r.detected, r.correct, r.image, r.image_id] for r in result.rows],
            "num_queries": result.num_queries, "grouped": result.grouped, "data_name": result.data_name}


def assignment(snapshot) -> dict:
    return {"queries": snapshot.query_indices.tolist(), "objects": snapshot.target_indices.tolist(),
            "cost": round(snapshot.matched_cost("total"), 4), "image_id": snapshot.image_id,
            "image_name": snapshot.image_name}


def record() -> dict:
    """With the twins (run inside the exported old ``detr_core``)."""
    import torch
    from detr_core.analysis.dataset_eval import evaluate_on

    from detr_core.analysis.counting import count_dataset, count_objects
    from detr_core.analysis.evaluate import evaluate_model, heldout_split
    from detr_core.analysis.layerwise import layerwise_ap, layerwise_ap_on
    from detr_core.analysis.matching import match_toy_sample, matcher_for
    from detr_core.checkpoint import load_model
    from detr_core.data.toy import ToyShapes

    torch.set_num_threads(1)
    model, ckpt = load_model(ROOT / "checkpoints" / "toy_shapes.pt")
    data_config = ckpt.train_config.data
    matcher = matcher_for(model, ckpt.train_config.loss)
    heldout = heldout_split(data_config, TOY_IMAGES)
    stream = ToyShapes(data_config, seed=0, split="train")
    out: dict = {"toy": {
        "evaluate": evaluate_model(model, heldout, TOY_IMAGES),
        "layerwise": [r.as_dict() for r in layerwise_ap(model, heldout, TOY_IMAGES)],
        "counting": counting_rows(count_objects(model, COUNTS, IMAGES_PER_COUNT, data_config=data_config,
                                                train_max_objects=data_config.max_objects)),
        "matching": [assignment(match_toy_sample(model, matcher, stream, i)) for i in MATCHED_SAMPLES],
    }}
    with tempfile.TemporaryDirectory() as tmp:
        for fmt in ("coco", "voc"):
            dataset = folder(Path(tmp), fmt, model)
            out[fmt] = {
                "evaluate": evaluate_on(model, dataset),
                "layerwise": [r.as_dict() for r in layerwise_ap_on(model, dataset, FOLDER_VAL_IMAGES)],
                "counting": counting_rows(count_dataset(model, dataset, threshold=0.5)),
                "matching": [assignment(match_toy_sample(model, matcher, dataset, i)) for i in MATCHED_SAMPLES],
            }
    return out


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).parent))
    from at_revision import main

    sys.exit(main(__file__, "c65b91c", record))
