"""Toy shapes written as a real COCO, VOC or YOLO folder, so the whole file path can be tried (and
tested) without a download.

COCO: ``OUT/train2017/*.jpg``, ``OUT/val2017/*.jpg``, ``OUT/annotations/instances_{train,val}2017.json``;
image ids, annotation ids and file names are unique across the splits (val continues after train).
VOC: ``OUT/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}`` plus ``class_names.txt``.
YOLO: ``OUT/data.yaml``, ``OUT/images/{train,val}/*.jpg``, ``OUT/labels/{train,val}/*.txt``.
The train split is the toy training stream of ``seed``; the val split is the fixed held-out
split every toy evaluation uses.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from detr_core.config import ToyDataConfig
from detr_core.data.toy import HELDOUT_SEED, ToyShapes
from detr_core.data.voc import CLASS_FILE

FORMATS = ("coco", "voc", "yolo")
JPEG = {"quality": 98, "subsampling": 0}  # 4:4:4, near lossless: the toy noise survives


def write_toy_dataset(
    out: str | Path, train: int, val: int, fmt: str = "coco", config: ToyDataConfig | None = None, seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Write ``train`` + ``val`` toy images in ``fmt`` under ``out``; returns the dataset root
    (``out`` for COCO and YOLO, ``out/VOCdevkit`` for VOC)."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    config = config or ToyDataConfig()
    out = Path(out)
    splits = {
        "train": ToyShapes(config, seed=seed, split="train", length=train),
        "val": ToyShapes(config, seed=HELDOUT_SEED, split="heldout", length=val),
    }
    total, done = train + val, 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    if fmt == "coco":
        first = (1, 1)
        for name, data in splits.items():  # ids continue across splits, as COCO's own files keep them unique
            first = _write_coco_split(out, f"{name}2017", data, tick, *first)
        return out
    if fmt == "yolo":
        for name, data in splits.items():
            _write_yolo_split(out, name, data, tick)
        _write_yolo_yaml(out, config.classes)
        return out
    year = out / "VOCdevkit" / "VOC2007"
    for sub in ("JPEGImages", "Annotations", "ImageSets/Main"):
        (year / sub).mkdir(parents=True, exist_ok=True)
    (year / CLASS_FILE).write_text("".join(f"{c}\n" for c in config.classes))
    lists: dict[str, list[str]] = {}
    for name, data in splits.items():
        for i in range(len(data)):
            image_name = f"{name}_{i:06d}"
            _write_voc_image(year, image_name, data.sample(i), data.class_names)
            lists.setdefault(name, []).append(image_name)
            tick()
    lists["trainval"] = lists["train"] + lists["val"]
    for name, ids in lists.items():
        (year / "ImageSets" / "Main" / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
    return out / "VOCdevkit"


def _write_coco_split(
    out: Path, split: str, data: ToyShapes, tick: Callable[[], None], first_image: int = 1, first_annotation: int = 1,
) -> tuple[int, int]:
    """One split, its image ids (and file names) from ``first_image``, its annotation ids from
    ``first_annotation``; returns the next split's (first image id, first annotation id)."""
    folder = out / split
    folder.mkdir(parents=True, exist_ok=True)
    images, annotations = [], []
    for i in range(len(data)):
        smp = data.sample(i)
        h, w = smp.image.shape[:2]
        image_id = first_image + i
        file_name = f"{image_id:012d}.jpg"
        Image.fromarray(smp.image).save(folder / file_name, **JPEG)
        images.append({"id": image_id, "file_name": file_name, "width": w, "height": h})
        for label, (x0, y0, x1, y1) in zip(smp.labels.tolist(), smp.boxes_xyxy.tolist()):
            annotations.append({
                "id": first_annotation + len(annotations), "image_id": image_id, "category_id": label + 1, "iscrowd": 0,
                "bbox": [x0, y0, x1 - x0, y1 - y0], "area": (x1 - x0) * (y1 - y0),
            })
        tick()
    categories = [{"id": k + 1, "name": n, "supercategory": "shape"} for k, n in enumerate(data.class_names)]
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    with open(out / "annotations" / f"instances_{split}.json", "w") as f:
        json.dump({"info": {"description": "DETR Explorer toy shapes"}, "images": images,
                   "annotations": annotations, "categories": categories}, f)
    return first_image + len(data), first_annotation + len(annotations)


def _write_voc_image(year: Path, image_name: str, smp, class_names: list[str]) -> None:
    h, w = smp.image.shape[:2]
    Image.fromarray(smp.image).save(year / "JPEGImages" / f"{image_name}.jpg", **JPEG)
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = year.name
    ET.SubElement(root, "filename").text = f"{image_name}.jpg"
    size = ET.SubElement(root, "size")
    for tag, value in (("width", w), ("height", h), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for label, (x0, y0, x1, y1) in zip(smp.labels.tolist(), smp.boxes_xyxy.tolist()):
        obj = ET.SubElement(root, "object")
        ET.SubElement(obj, "name").text = class_names[label]
        ET.SubElement(obj, "difficult").text = "0"
        box = ET.SubElement(obj, "bndbox")
        # 1-based inclusive pixel indices: [x0, x1) -> xmin = x0 + 1, xmax = x1
        for tag, value in (("xmin", x0 + 1), ("ymin", y0 + 1), ("xmax", x1), ("ymax", y1)):
            ET.SubElement(box, tag).text = str(round(value))
    ET.indent(root)
    ET.ElementTree(root).write(year / "Annotations" / f"{image_name}.xml")


def _write_yolo_split(out: Path, split: str, data: ToyShapes, tick: Callable[[], None]) -> None:
    images, labels = out / "images" / split, out / "labels" / split
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(len(data)):
        smp = data.sample(i)
        h, w = smp.image.shape[:2]
        stem = f"{split}_{i:06d}"
        Image.fromarray(smp.image).save(images / f"{stem}.jpg", **JPEG)
        lines = []
        for label, (x0, y0, x1, y1) in zip(smp.labels.tolist(), smp.boxes_xyxy.tolist()):
            cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h  # normalised
            lines.append(f"{label} {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        (labels / f"{stem}.txt").write_text("".join(lines))
        tick()


def _write_yolo_yaml(out: Path, classes: tuple[str, ...] | list[str]) -> None:
    """data.yaml as Ultralytics writes it: splits relative to ``path`` (the dataset folder)."""
    names = "".join(f"  {k}: {json.dumps(n)}\n" for k, n in enumerate(classes))  # JSON strings are YAML
    (out / "data.yaml").write_text(f"# DETR Explorer toy shapes\npath: .\ntrain: images/train\nval: images/val\n"
                                   f"nc: {len(classes)}\nnames:\n{names}")
