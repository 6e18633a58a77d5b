"""COCO-format datasets: a folder of images plus an ``instances`` JSON, read with pycocotools.

Category ids map to contiguous labels in id order; class names come from the JSON. ``iscrowd``
objects are not training targets and stay in the evaluation ground truth as COCO intends.
Images without annotations are valid negatives. Anything malformed is left out with a message
naming the file and the problem; only a file that cannot be used at all raises DatasetError.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import numbers
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO

from detr_core.data.dataset import DatasetError
from detr_core.data.files import (
    FileDataset,
    ImageRecord,
    Problem,
    clip_box,
    image_size,
    record_arrays,
)
from detr_core.data.ground_truth import coco_from_dict

SPLITS = ("train2017", "val2017")  # the reference layout's default train and val splits
ROBOFLOW_FILE = "_annotations.coco.json"  # Roboflow's COCO export: one per split folder
ROBOFLOW_SPLITS = ("train", "valid", "test")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
LAYOUTS = ("COCO 2017 (annotations/instances_NAME.json with the images in NAME/, e.g. train2017/, val2017/)",
           f"Roboflow export (train/, valid/, test/, each holding its images and {ROBOFLOW_FILE})",
           "images plus one COCO .json in the same folder (one split)")


@dataclass(frozen=True)
class Layout:
    """How a COCO folder is laid out, found by :func:`find_layout`: its splits by name, each an
    (images folder, annotation file) pair, and the splits training and evaluation take by default."""

    kind: str  # "COCO 2017", "Roboflow export" or "images + one JSON"
    root: Path
    splits: dict[str, tuple[Path, Path]]
    train: str
    val: str

    def describe(self) -> str:
        """E.g. "Roboflow export, splits train, valid, test" (what the CLI and the window print)."""
        names = ", ".join(self.splits)
        return f"{self.kind}, split{'s' if len(self.splits) > 1 else ''} {names}"

    def split(self, name: str, role: str = "train") -> tuple[str, Path, Path]:
        """(split name, images folder, annotation file) of ``name`` ("" = the default for ``role``,
        "train" or "val"). Roboflow's "valid" answers to "val" too. Raises DatasetError naming the
        splits there are."""
        name = name or (self.train if role == "train" else self.val)
        if name not in self.splits and name == "val" and "valid" in self.splits:
            name = "valid"
        if name not in self.splits:
            missing = self.root / "annotations" / f"instances_{name}.json" if self.kind == "COCO 2017" else \
                self.root / name
            raise DatasetError(f"{missing}: no such {'file' if self.kind == 'COCO 2017' else 'split'}; "
                               f"{self.root.name} ({self.kind}) has splits: {', '.join(self.splits)}")
        return (name, *self.splits[name])


def reference_split(root: Path, split: str) -> tuple[Path, Path]:
    """(images folder, annotation file) of split NAME in ``ROOT/NAME/`` +
    ``ROOT/annotations/instances_NAME.json``."""
    return root / split, root / "annotations" / f"instances_{split}.json"


def detect_layout(root: Path) -> Layout | None:
    """The layout of the COCO folder ``root``, or None: COCO 2017's, a Roboflow export or a folder
    of images with one .json beside them (tried in that order)."""
    root = Path(root)
    if not root.is_dir():
        return None
    names = coco_splits(root)
    if names:
        splits = {n: reference_split(root, n) for n in names}
        # never another split in train's place: a folder without one says so rather than train on val
        train = next((n for n in (SPLITS[0], "train") if n in splits), SPLITS[0])
        val = next((n for n in (SPLITS[1], "val") if n in splits), SPLITS[1])
        return Layout("COCO 2017", root, splits, train, val)
    splits = {n: (root / n, root / n / ROBOFLOW_FILE) for n in ROBOFLOW_SPLITS if (root / n / ROBOFLOW_FILE).is_file()}
    if splits:
        return Layout("Roboflow export", root, splits, "train", "valid" if "valid" in splits or "test" not in splits
                      else "test")
    jsons = sorted(root.glob("*.json"))
    if len(jsons) == 1 and any(p.suffix.lower() in IMAGE_SUFFIXES for p in root.iterdir()):
        name = jsons[0].stem.removeprefix("instances_").removesuffix(".coco")
        return Layout("images + one JSON", root, {name: (root, jsons[0])}, name, name)
    return None


def find_layout(root: Path) -> Layout:
    """:func:`detect_layout`, or a DatasetError listing the layouts known and the explicit form."""
    layout = detect_layout(root)
    if layout is not None:
        return layout
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    jsons = sorted(p.name for p in root.glob("*.json"))
    several = f"; it holds {len(jsons)} .json files: name one" if len(jsons) > 1 else ""
    raise DatasetError(f"{root}: not a COCO folder (no layout found{several}); known layouts: {'; '.join(LAYOUTS)}; "
                       "or name the images and the file: coco:IMAGES,ANNOTATIONS.json")


def is_coco_root(root: Path) -> bool:
    return detect_layout(root) is not None


def coco_splits(root: Path) -> list[str]:
    return sorted(p.stem.removeprefix("instances_") for p in (root / "annotations").glob("instances_*.json"))


def load_coco_api(annotation_file: Path) -> COCO:
    """pycocotools' COCO over the file, its errors turned into DatasetError naming the file."""
    if not annotation_file.is_file():
        raise DatasetError(f"{annotation_file}: no such file")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            return COCO(str(annotation_file))
    except json.JSONDecodeError as e:
        raise DatasetError(f"{annotation_file}: not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    except UnicodeDecodeError as e:
        raise DatasetError(f"{annotation_file}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    except AssertionError:
        raise DatasetError(f"{annotation_file}: not a COCO annotation file (the top level is not an object)") from None
    except KeyError as e:
        raise DatasetError(f"{annotation_file}: not a COCO instances file (an entry has no {e.args[0]!r})") from None
    except (TypeError, AttributeError) as e:
        raise DatasetError(f"{annotation_file}: not a COCO instances file ({e})") from None
    except OSError as e:
        raise DatasetError(f"{annotation_file}: cannot read ({e.strerror or e})") from None


def open_coco(images_dir: Path, annotation_file: Path, name: str | None = None, check_images: bool = True) -> FileDataset:
    """A COCO split. ``check_images`` reads each image's header on opening (fast; finds
    missing, unreadable and wrongly sized files before training starts)."""
    images_dir, annotation_file = Path(images_dir), Path(annotation_file)
    coco = load_coco_api(annotation_file)
    data = coco.dataset
    fname = annotation_file.name
    for key in ("images", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{annotation_file}: not a COCO instances file (no {key!r} list)")
    if not images_dir.is_dir():
        raise DatasetError(f"{images_dir}: no such folder (the images of {fname})")
    problems: list[Problem] = []

    category_ids = sorted(coco.cats)
    if not category_ids:
        raise DatasetError(f"{annotation_file}: no categories")
    repeated = [c for c, n in Counter(c["id"] for c in data["categories"]).items() if n > 1]
    for c in repeated:
        problems.append(Problem("duplicate category id", f"{fname}: category id {c} is listed more than once; "
                                                          f"the last entry is used"))
    class_names = [str(coco.cats[c].get("name", f"category {c}")) for c in category_ids]
    label_of = {c: i for i, c in enumerate(category_ids)}

    duplicated = {i for i, n in Counter(img.get("id") for img in data["images"]).items() if n > 1}
    for i in sorted(duplicated, key=str):
        names = [img.get("file_name") for img in data["images"] if img.get("id") == i]
        problems.append(Problem("duplicate image id", f"{fname}: image id {i} is used by {len(names)} images "
                                                      f"({', '.join(map(str, names[:3]))}); all left out"))

    records: dict[int, ImageRecord] = {}
    for img_id, img in coco.imgs.items():
        if img_id in duplicated:
            continue
        file_name = img.get("file_name")
        if not isinstance(img_id, int) or not isinstance(file_name, str):
            problems.append(Problem("bad image entry", f"{fname}: image entry {img_id!r} has no integer id or no "
                                                       "file_name; left out"))
            continue
        path = images_dir / file_name
        width, height = img.get("width"), img.get("height")
        if check_images:
            size = image_size(path)
            if isinstance(size, str):
                kind = "missing image" if size == "no such file" else "unreadable image"
                problems.append(Problem(kind, f"{path}: {size} (image id {img_id}); left out"))
                continue
            if width is not None and height is not None and size != (width, height):
                problems.append(Problem("image size mismatch", f"{path}: {size[0]}x{size[1]} pixels but {fname} says "
                                                               f"{width}x{height}; left out"))
                continue
            width, height = size
        if not (isinstance(width, numbers.Integral) and isinstance(height, numbers.Integral) and width > 0 < height):
            problems.append(Problem("bad image entry", f"{fname}: image {img_id} ({file_name}) has no valid width "
                                                       "and height; left out"))
            continue
        records[img_id] = ImageRecord(path, img_id, int(width), int(height), np.zeros(0, np.int64),
                                      np.zeros((0, 4), np.float32))

    targets: dict[int, list[tuple[int, list[float]]]] = {i: [] for i in records}
    crowds: dict[int, list[tuple[int, list[float]]]] = {i: [] for i in records}
    kept_annotations = []
    for ann_id, ann in coco.anns.items():
        where = f"{fname}: annotation {ann_id}"
        img_id, cat = ann.get("image_id"), ann.get("category_id")
        if img_id not in coco.imgs:
            problems.append(Problem("annotation of a missing image",
                                    f"{where} names image {img_id!r}, which the file does not list; left out"))
            continue
        if img_id not in records:
            continue  # the image itself was left out, with its own message
        if cat not in label_of:
            problems.append(Problem("unknown category", f"{where}: unknown category id {cat!r}; left out"))
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, numbers.Real) for v in bbox)):
            problems.append(Problem("bad box", f"{where}: bbox {bbox!r} is not [x, y, width, height]; left out"))
            continue
        r = records[img_id]
        x, y, w, h = bbox
        box, note = clip_box([x, y, x + w, y + h], r.width, r.height)
        if box is None:
            problems.append(Problem(f"box {note}", f"{where} ({r.path.name}): box {bbox} has {note}; left out"
                                    if note == "zero or negative size" else
                                    f"{where} ({r.path.name}): box {bbox} is {note} of {r.width}x{r.height}; left out"
                                    if note == "outside the image" else f"{where}: box {bbox}: {note}; left out"))
            continue
        if note == "clipped":
            problems.append(Problem("box clipped to the image", f"{where} ({r.path.name}): box {bbox} extends past "
                                                                f"the {r.width}x{r.height} image; clipped"))
        (crowds if ann.get("iscrowd") else targets)[img_id].append((label_of[cat], box))
        area = ann.get("area")
        if not (isinstance(area, numbers.Real) and math.isfinite(area) and area > 0):
            area = (box[2] - box[0]) * (box[3] - box[1])
        kept_annotations.append({**ann, "bbox": [box[0], box[1], box[2] - box[0], box[3] - box[1]], "area": area,
                                 "iscrowd": int(bool(ann.get("iscrowd")))})

    for img_id, r in records.items():
        r.labels, r.boxes_xyxy = record_arrays(targets[img_id])
        r.ignored_labels, r.ignored_xyxy = record_arrays(crowds[img_id])
    kept = sorted(records.values(), key=lambda r: r.image_id)
    changed = any(p.kind != "duplicate category id" for p in problems)
    ground_truth = coco if not changed else coco_from_dict({
        "images": [coco.imgs[r.image_id] for r in kept],
        "annotations": kept_annotations,
        "categories": [coco.cats[c] for c in category_ids],
    })
    return FileDataset(name or f"COCO {annotation_file.stem.removeprefix('instances_')}", class_names,
                       category_ids, kept, problems, ground_truth)

