"""Ground truth as a pycocotools ``COCO`` object: the one way any dataset's annotations become
what COCOeval scores against (see :meth:`DetectionDataset.coco_ground_truth`).

Each image's kept objects are annotations with ``iscrowd`` 0; its ignored objects (COCO crowd
regions, VOC ``difficult``) have ``iscrowd`` 1, which COCOeval neither rewards nor punishes.
Boxes are ``[x, y, w, h]`` in the pixels of the stored image, areas those of the boxes.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pycocotools is imported where it is used, not at startup
    from pycocotools.coco import COCO

    from detr_core.data.dataset import Annotations


def build_coco(annotations: Sequence[Annotations], class_names: list[str], category_ids: list[int]) -> COCO:
    """A COCO object over ``annotations`` (one per image), labels mapped to ``category_ids``."""
    images, objects = [], []
    for a in annotations:
        images.append({"id": a.image_id, "width": a.width, "height": a.height, "file_name": a.file_name})
        for crowd, labels, boxes in ((0, a.labels, a.boxes_xyxy), (1, a.ignored_labels, a.ignored_xyxy)):
            for label, (x0, y0, x1, y1) in zip(labels.tolist(), boxes.tolist()):
                objects.append({
                    "id": len(objects) + 1, "image_id": a.image_id, "category_id": category_ids[label],
                    "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0), "iscrowd": crowd,
                })
    categories = [{"id": c, "name": n} for c, n in zip(category_ids, class_names)]
    return coco_from_dict({"images": images, "annotations": objects, "categories": categories})


def coco_from_dict(dataset: dict) -> COCO:
    """A pycocotools COCO object over an in-memory dict, without its progress prints."""
    from pycocotools.coco import COCO

    coco = COCO()
    coco.dataset = dataset
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco
