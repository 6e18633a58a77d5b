"""Before training: the annotations as declared, checked for what makes DETR learn nothing.

The COCO and VOC loaders clip, skip and remap boxes so that training can start; that hides the
mistakes people make when they write their own annotations. This module reads the files again,
as declared (COCO ``bbox`` is ``[x, y, width, height]`` in pixels; VOC ``bndbox`` is 1-based
inclusive ``xmin ymin xmax ymax`` in pixels; a YOLO label line is ``class cx cy w h`` normalised
to [0, 1], turned into pixels with the size read from the image), and names each problem once:

    report = check_dataset("coco:my-data", num_queries=100, stride=32, train_size=800)
    for f in report.findings:
        print(f.title, f.images, f.objects, f.examples, f.fix)

A finding that explains others comes alone: boxes in another format than declared, normalised
where pixels are expected, or pixels where normalised coordinates are expected (YOLO), are the
one finding about box geometry (the rest would follow from it);
class ids shifted by one are not also reported as an empty category.
"""

from __future__ import annotations

import json
import numbers
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torchvision.ops import box_iou

from detr_core.data.dataset import DatasetError
from detr_core.data.files import image_size

EXAMPLES = 5  # example image ids per finding
PIXEL_SLACK = 1.0  # pixels a box may pass the image edge before it counts as outside (rounding)
FORMAT_FRACTION = 0.2  # share of boxes that must read better in another format to say so
TINY_FRACTION = 0.01  # share of objects below one feature cell before it is worth a finding
IMBALANCE_RATIO = 10.0  # most frequent class / least frequent (with objects)
DUPLICATE_IOU = 0.9  # same class, this much overlap: one object annotated twice
PIXEL_SHARE = 0.5  # share of a normalised format's boxes with a coordinate above 1 to call them pixels


@dataclass
class RawObject:
    category: int | str  # COCO category_id or VOC class name, as written
    coords: tuple[float, ...]  # the four numbers as written
    box_xyxy: tuple[float, float, float, float]  # pixels, read as the format declares


@dataclass
class RawImage:
    image_id: int | str
    path: Path | None  # None for generated (toy) images
    width: int  # as declared (or as read, when the annotation has none)
    height: int
    objects: list[RawObject] = field(default_factory=list)
    open_problem: str = ""  # why the image file cannot be opened ("" when it can)
    actual_size: tuple[int, int] | None = None  # (width, height) read from the file, when it differs


@dataclass
class RawDataset:
    name: str
    format: str  # "coco" (xywh pixels), "voc" (xyxy 1-based pixels), "yolo" (cxcywh in [0, 1]) or "toy"
    categories: list[int | str]  # as declared, in label order
    category_names: list[str]
    images: list[RawImage]


@dataclass
class Finding:
    key: str  # stable id, e.g. "box_format"
    title: str  # what is wrong, one line
    cause: str  # why it matters for DETR / what it looks like
    fix: str  # what to do
    images: int  # images it touches
    objects: int  # objects it touches (0 for image-level findings)
    examples: list[int | str]  # a few image ids

    def as_dict(self) -> dict:
        return {"key": self.key, "title": self.title, "cause": self.cause, "fix": self.fix, "images": self.images,
                "objects": self.objects, "examples": [str(e) for e in self.examples]}


@dataclass
class DataReport:
    name: str
    images: int
    objects: int
    findings: list[Finding]
    paths: dict[str, Path]  # str(image id) -> file, to open an example
    settings: dict[str, int]  # the model figures the checks used (queries, stride, train size, classes)
    raw: RawDataset | None = None  # what was read, to show an example image with its boxes

    def example(self, image_id: int | str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """An image of the report and its objects as declared: [H, W, 3] uint8, labels [N] int64
        (index into the category list, -1 for an unknown id), boxes [N, 4] xyxy pixels.
        Raises DatasetError when the image cannot be read."""
        from detr_core.data.files import read_rgb

        if self.raw is None:
            raise DatasetError("this report keeps no images")
        img = next(i for i in self.raw.images if str(i.image_id) == str(image_id))
        if img.path is None:  # generated
            from detr_core.data.toy import ToyShapes

            rgb = ToyShapes(seed=0, split="train", length=len(self.raw.images)).sample(int(img.image_id)).image
        else:
            rgb = read_rgb(img.path)
        labels = np.array([self.raw.categories.index(o.category) if o.category in self.raw.categories else -1
                           for o in img.objects], np.int64)
        boxes = np.array([o.box_xyxy for o in img.objects], np.float32).reshape(-1, 4)
        return rgb, labels, boxes

    @property
    def healthy(self) -> bool:
        return not self.findings

    def as_dict(self) -> dict:
        return {"name": self.name, "images": self.images, "objects": self.objects, "settings": self.settings,
                "findings": [f.as_dict() for f in self.findings]}

    def text(self) -> str:
        lines = [(f"{self.name}: {self.images} images, {self.objects} objects; checked for a model with "
                 f"{self.settings['num_queries']} queries, a feature cell of {self.settings['stride']} px at "
                 f"{self.settings['train_size']} px training size")]
        if not self.findings:
            lines.append("No problems found.")
        for f in self.findings:
            touched = f"{f.images} images" + (f", {f.objects} objects" if f.objects else "")
            lines.append(f"- {f.title} ({touched}; e.g. image {', '.join(map(str, f.examples))})")
            lines.append(f"    why: {f.cause}")
            lines.append(f"    fix: {f.fix}")
        return "\n".join(lines)


# --- reading the files as declared -------------------------------------------------------------

def read_raw(source: str, split: str = "", toy_images: int = 200, check_images: bool = True) -> RawDataset:
    """The annotations of ``source`` ("toy", "coco:PATH", "voc:PATH", "yolo:PATH" or a path) as written.
    Raises DatasetError when the files cannot be read at all."""
    from detr_core.data import coco, voc, yolo
    from detr_core.data.sources import parse_source

    kind, path = parse_source(source)
    if kind == "toy" or path is None:
        return _read_toy(toy_images)
    if kind == "voc":
        return _read_voc(path, split or voc.SPLITS[0], check_images)
    if kind == "yolo":
        return _read_yolo(path, split or yolo.SPLITS[0])
    pair = split if "," in split else str(path) if "," in str(path) else ""
    if pair:
        images_dir, annotations = (Path(p.strip()) for p in pair.split(",", 1))
        if "," not in str(path):
            images_dir, annotations = path / images_dir, path / annotations
        return _read_coco(images_dir, annotations, check_images)
    name, images_dir, annotations = coco.find_layout(path).split(split, "train")
    return _read_coco(images_dir, annotations, check_images, f"COCO {name}")


def _read_toy(n: int) -> RawDataset:
    from detr_core.config import ToyDataConfig
    from detr_core.data.toy import ToyShapes

    data = ToyShapes(ToyDataConfig(), seed=0, split="train", length=n)
    images = []
    for i in range(n):
        smp = data.sample(i)
        h, w = smp.image.shape[:2]
        objects = [RawObject(int(lab), tuple(box), tuple(box)) for lab, box in
                   zip(smp.labels.tolist(), smp.boxes_xyxy.tolist())]
        images.append(RawImage(i, None, w, h, objects))
    names = list(data.class_names)
    return RawDataset("toy shapes", "toy", list(range(len(names))), names, images)


def _read_coco(images_dir: Path, annotation_file: Path, check_images: bool, name: str = "") -> RawDataset:
    try:
        data = json.loads(annotation_file.read_text())
    except FileNotFoundError:
        raise DatasetError(f"{annotation_file}: no such file") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DatasetError(f"{annotation_file}: cannot read as JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{annotation_file}: not a COCO instances file (no 'images' list)")
    categories = [c for c in data.get("categories") or [] if isinstance(c, dict) and "id" in c]
    images: dict = {}
    for entry in data["images"]:
        if not isinstance(entry, dict) or "id" not in entry:
            continue
        path = images_dir / str(entry.get("file_name", ""))
        width, height = entry.get("width"), entry.get("height")
        img = RawImage(entry["id"], path, int(width or 0), int(height or 0))
        if check_images:
            size = image_size(path)
            if isinstance(size, str):
                img.open_problem = size
            elif img.width and img.height and size != (img.width, img.height):
                img.actual_size = size
            elif not (img.width and img.height):
                img.width, img.height = size
        images[entry["id"]] = img
    for ann in data.get("annotations") or []:
        if not isinstance(ann, dict) or ann.get("image_id") not in images or ann.get("iscrowd"):
            continue
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, numbers.Real) for v in bbox)):
            continue  # the loader names malformed entries; nothing to measure here
        x, y, w, h = (float(v) for v in bbox)
        images[ann["image_id"]].objects.append(RawObject(ann.get("category_id"), (x, y, w, h), (x, y, x + w, y + h)))
    name = name or f"COCO {annotation_file.stem.removeprefix('instances_')}"
    return RawDataset(name, "coco", [c["id"] for c in categories],
                      [str(c.get("name", c["id"])) for c in categories], list(images.values()))


def _read_voc(root: Path, split: str, check_images: bool) -> RawDataset:
    from detr_core.data.voc import read_split

    year, _, ids, names = read_split(root, split)
    images = []
    for image_name in dict.fromkeys(ids):
        try:
            root_el = ET.parse(year / "Annotations" / f"{image_name}.xml").getroot()
        except (OSError, ET.ParseError):
            continue  # the loader names these
        path = year / "JPEGImages" / (root_el.findtext("filename") or f"{image_name}.jpg").strip()
        try:
            width, height = int(float(root_el.findtext("size/width", "0"))), int(float(root_el.findtext("size/height", "0")))
        except ValueError:
            width = height = 0
        img = RawImage(image_name, path, width, height)
        if check_images or not (width and height):
            size = image_size(path)
            if isinstance(size, str):
                img.open_problem = size
            elif width and height and size != (width, height):
                img.actual_size = size
            elif not (width and height):
                img.width, img.height = size
        for obj in root_el.iter("object"):
            if (obj.findtext("difficult") or "0").strip() == "1":
                continue
            try:
                coords = tuple(float(obj.findtext(f"bndbox/{t}", "")) for t in ("xmin", "ymin", "xmax", "ymax"))
            except ValueError:
                continue
            x0, y0, x1, y1 = coords
            img.objects.append(RawObject((obj.findtext("name") or "").strip(), coords, (x0 - 1, y0 - 1, x1, y1)))
        images.append(img)
    return RawDataset(f"{year.name} {split}", "voc", list(names), list(names), images)


def _read_yolo(root: Path, split: str) -> RawDataset:
    """YOLO labels as written; every image is measured (the format stores no sizes), so
    ``check_images`` does not apply. A label file that does not parse is left to the loader."""
    from detr_core.data.yolo import label_path, read_labels, read_layout, split_images, to_pixels

    layout = read_layout(root)
    images = []
    for image in split_images(layout, split):
        img = RawImage(image.stem, image, 0, 0)
        size = image_size(image)
        if isinstance(size, str):
            img.open_problem = size
        else:
            img.width, img.height = size
        lines, why = read_labels(label_path(image))
        for line in ([] if why else lines):
            box = to_pixels(line.box_cxcywh(), img.width, img.height)
            img.objects.append(RawObject(line.category, line.coords, tuple(box)))
        images.append(img)
    names = layout.class_names
    return RawDataset(f"YOLO {layout.yaml_file.parent.name} {split}", "yolo", list(range(len(names))), names, images)


# --- the checks ---------------------------------------------------------------------------------

def check_dataset(
    source: str, split: str = "", num_queries: int = 20, stride: int = 16, train_size: int = 128,
    num_classes: int | None = None, toy_images: int = 200, check_images: bool = True,
) -> DataReport:
    """Check one split of ``source`` for a model with ``num_queries`` queries, a feature cell of
    ``stride`` input pixels and images resized to ``train_size`` px on the shorter side (the
    defaults are the toy presets'); ``num_classes`` when a model's class count is fixed."""
    raw = read_raw(source, split, toy_images, check_images)
    return check_raw(raw, num_queries, stride, train_size, num_classes)


def check_raw(
    raw: RawDataset, num_queries: int = 20, stride: int = 16, train_size: int = 128, num_classes: int | None = None,
) -> DataReport:
    findings: list[Finding] = []
    add = findings.append
    objects = [(img, obj) for img in raw.images for obj in img.objects]

    def finding(key: str, title: str, cause: str, fix: str, hits: list[tuple[RawImage, RawObject | None]]) -> None:
        ids = list(dict.fromkeys(img.image_id for img, _ in hits))
        add(Finding(key, title, cause, fix, len(ids), sum(o is not None for _, o in hits), ids[:EXAMPLES]))

    # images that fail to open, or are not the size the annotations say
    broken = [(img, None) for img in raw.images if img.open_problem]
    if broken:
        reason = Counter(img.open_problem for img, _ in broken).most_common(1)[0][0]
        finding("unreadable_images", "Images that fail to open",
                f"the file is missing or unreadable (e.g. {reason}); the loader leaves these images out",
                "restore or re-export the files, or remove their entries from the annotations", broken)
    resized = [(img, None) for img in raw.images if img.actual_size is not None]
    if resized:
        img = resized[0][0]
        finding("size_mismatch", "Images of another size than the annotations say",
                f"e.g. image {img.image_id} is {img.actual_size[0]}x{img.actual_size[1]} but declared "
                f"{img.width}x{img.height}: the boxes were drawn on another version of the image",
                "write the real width and height, or re-annotate the resized images", resized)

    # categories: ids missing from the list, shifted by one, beyond the model, without objects
    known = set(raw.categories)
    unknown = [(img, o) for img, o in objects if o.category not in known]
    used = Counter(o.category for _, o in objects if o.category in known)
    explained_empty: set = set()
    if unknown:
        shift = _id_shift(raw.categories, [o.category for _, o in objects])
        if shift:
            explained_empty = {c for c in raw.categories if c - shift not in {o.category - shift for _, o in objects}}
            finding("class_ids_shifted", f"Class ids shifted by {shift:+d}",
                    f"the annotations use ids {_span([o.category for _, o in objects])} but the category list "
                    f"has {_span(raw.categories)}: every object would be trained as its neighbour's class, and "
                    "the objects of the last id are dropped",
                    f"subtract {shift} from every {'class id' if raw.format == 'yolo' else 'category_id'} "
                    "(0-based vs 1-based ids)", unknown)
        else:
            missing = sorted({str(o.category) for _, o in unknown})
            finding("unknown_class", "Class ids missing from the category list",
                    f"ids {', '.join(missing[:8])} are not among the categories; the loader drops these objects",
                    "add the categories to the list, or correct the ids", unknown)
    if num_classes is not None and len(raw.categories) > num_classes:
        beyond = set(raw.categories[num_classes:])
        hits = [(img, o) for img, o in objects if o.category in beyond]
        finding("beyond_model_classes", "More classes than the model has",
                f"the dataset has {len(raw.categories)} classes, the model {num_classes}",
                "train a new class head (main.py train --init CKPT re-initialises it when the count differs)",
                hits or [(raw.images[0], None)])
    empty = [c for c in raw.categories if used[c] == 0 and c not in explained_empty]
    if empty and objects:
        names = [raw.category_names[raw.categories.index(c)] for c in empty]
        add(Finding("empty_category", "Categories with no objects",
                    f"{', '.join(names[:8])} ha{'s' if len(names) == 1 else 've'} no object in this split: the model "
                    "has a class it never sees, and evaluation counts it as a class with no AP",
                    "remove the category or annotate its objects", 0, 0, []))

    # box geometry, as declared; a box format mistake explains everything else about boxes
    valid_size = [(img, o) for img, o in objects if img.width > 0 and img.height > 0]
    geometry_ok = True
    misread = _format_mismatch(raw.format, valid_size)
    if misread:
        geometry_ok = False
        if raw.format == "coco":
            finding("box_format", "Boxes look like [x0, y0, x1, y1], not COCO's [x, y, width, height]",
                    "read as [x, y, width, height], many boxes run past the image while the same numbers read as "
                    "corners fit inside it: the model is taught boxes that are too large and shifted",
                    "write bbox as [x0, y0, x1 - x0, y1 - y0]", misread)
        else:
            finding("box_format", "Boxes look like [x, y, width, height], not VOC's xmin ymin xmax ymax",
                    "many boxes end before they start (xmax < xmin or ymax < ymin), as width and height would",
                    "write xmax = x + width and ymax = y + height", misread)
    elif raw.format == "yolo" and _pixels(valid_size):
        geometry_ok = False
        finding("box_pixels", "Boxes are in pixels, normalised [0, 1] expected",
                "YOLO label lines are 'class cx cy w h' as fractions of the image, but most boxes here have "
                "coordinates above 1: read as fractions they lie far outside the image, and the loader drops them",
                "divide cx and w by the image width, cy and h by its height (and check the numbers are "
                "centre, width, height, not corners)", valid_size)
    elif raw.format in ("coco", "voc") and _normalised(valid_size):
        geometry_ok = False
        finding("box_units", "Boxes are normalised to [0, 1], pixels expected",
                f"every coordinate is at most 1, so in {raw.format.upper()} pixels every object is under a "
                "pixel wide in the top-left corner",
                "multiply x and width by the image width, y and height by its height", valid_size)
    if geometry_ok:
        flat = [(img, o) for img, o in valid_size if o.box_xyxy[2] <= o.box_xyxy[0] or o.box_xyxy[3] <= o.box_xyxy[1]]
        if flat:
            finding("zero_area", "Boxes with zero or negative area",
                    "a box whose end is not after its start; the loader drops it", "correct or delete these boxes", flat)
        flat_ids = {id(o) for _, o in flat}
        outside = [(img, o) for img, o in valid_size if id(o) not in flat_ids and _outside(img, o.box_xyxy)]
        if outside:
            finding("outside_image", "Boxes outside the image",
                    "a box runs past the image edge (the loader clips it, or drops it when nothing is left)",
                    "check the image size and the box origin (0- or 1-based, top-left corner)", outside)
        scale = lambda img: train_size / min(img.width, img.height)
        tiny = [(img, o) for img, o in valid_size
                if max(o.box_xyxy[2] - o.box_xyxy[0], o.box_xyxy[3] - o.box_xyxy[1]) * scale(img) < stride
                and id(o) not in flat_ids]
        if tiny and len(tiny) >= TINY_FRACTION * len(objects):
            finding("tiny_objects", "Objects smaller than one feature cell",
                    f"at {train_size} px training size these objects are under {stride} px, one cell of the "
                    "backbone's output: the features barely see them",
                    "train at a larger size (--set scales=..., max_size=...), use a backbone with a finer "
                    "stride (tiny_stride=8), or crop the images around the objects", tiny)
        duplicates = _duplicates(raw.images)
        if duplicates:
            finding("duplicate_boxes", "Duplicate boxes",
                    f"the same object annotated twice (same class, IoU above {DUPLICATE_IOU}): two queries are "
                    "trained on one object, which teaches duplicate detections",
                    "remove the repeated annotations", duplicates)

    crowded = [(img, None) for img in raw.images if len(img.objects) > num_queries]
    if crowded:
        most = max(len(img.objects) for img, _ in crowded)
        finding("too_many_objects", "Images with more objects than the model has queries",
                f"up to {most} objects but {num_queries} queries: each query finds at most one object, so the "
                "rest can never be detected (and are never matched in training)",
                f"use more queries (--set num_queries={max(2 * most, num_queries)}) or tile the images", crowded)

    counts = Counter(o.category for _, o in objects if o.category in known)
    if len(counts) >= 2 and len(objects) >= 20:
        (top, n_top), (low, n_low) = counts.most_common()[0], counts.most_common()[-1]
        if n_top >= IMBALANCE_RATIO * n_low:
            name = {c: n for c, n in zip(raw.categories, raw.category_names)}
            hits = [(img, o) for img, o in objects if o.category == low]
            finding("class_imbalance", "Strong class imbalance",
                    f"{name[top]} has {n_top} objects, {name[low]} only {n_low}: the rare class is learned late "
                    "or predicted as the common one",
                    "annotate more of the rare class, or sample its images more often", hits)

    return DataReport(raw.name, len(raw.images), len(objects), findings,
                      {str(img.image_id): img.path for img in raw.images if img.path is not None},
                      {"num_queries": num_queries, "stride": stride, "train_size": train_size,
                       "num_classes": num_classes if num_classes is not None else -1}, raw)


def _span(ids: list) -> str:
    ints = [i for i in ids if isinstance(i, int)]
    return f"{min(ints)}..{max(ints)}" if ints else "?"


def _id_shift(categories: list, used: list) -> int:
    """+1 or -1 when shifting the used ids by it lands them all on the categories (and some ids
    are unknown as they are), else 0."""
    if not all(isinstance(c, int) for c in categories) or not all(isinstance(c, int) for c in used):
        return 0
    cats, ids = set(categories), set(used)
    for shift in (1, -1):
        if {i - shift for i in ids} <= cats and not ids <= cats:
            return shift
    return 0


def _outside(img: RawImage, box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    return x0 < -PIXEL_SLACK or y0 < -PIXEL_SLACK or x1 > img.width + PIXEL_SLACK or y1 > img.height + PIXEL_SLACK


def _format_mismatch(fmt: str, objects: list[tuple[RawImage, RawObject]]) -> list[tuple[RawImage, RawObject]]:
    """The boxes that read better in the other format, when they are many; else []."""
    if fmt == "coco":  # declared [x, y, w, h]: written as corners, x + "w" runs past the image
        hits = [(img, o) for img, o in objects if _outside(img, o.box_xyxy)
                and o.coords[2] > o.coords[0] and o.coords[3] > o.coords[1]
                and o.coords[2] <= img.width + PIXEL_SLACK and o.coords[3] <= img.height + PIXEL_SLACK]
    elif fmt == "voc":  # declared corners: written as [x, y, w, h], the "end" often comes before the start
        hits = [(img, o) for img, o in objects if o.coords[2] < o.coords[0] or o.coords[3] < o.coords[1]]
    else:
        return []
    return hits if len(hits) >= 3 and len(hits) >= FORMAT_FRACTION * len(objects) else []


def _normalised(objects: list[tuple[RawImage, RawObject]]) -> bool:
    if not objects:
        return False
    top = max(max(abs(v) for v in o.coords) for _, o in objects)
    return top <= 1.0 + 1e-6 and min(min(img.width, img.height) for img, _ in objects) > 4


def _pixels(objects: list[tuple[RawImage, RawObject]]) -> bool:
    """Most boxes of a normalised format have a coordinate above 1 (pixels, not fractions)."""
    above = sum(max(o.coords) > 1.0 + 1e-3 for _, o in objects)
    return bool(objects) and above >= PIXEL_SHARE * len(objects)


def _duplicates(images: list[RawImage]) -> list[tuple[RawImage, RawObject]]:
    hits = []
    for img in images:
        if len(img.objects) < 2:
            continue
        boxes = torch.tensor([o.box_xyxy for o in img.objects], dtype=torch.float64)  # [N, 4] xyxy pixels
        valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        iou = box_iou(boxes, boxes)
        same = torch.tensor([[a.category == b.category for b in img.objects] for a in img.objects])
        pair = (iou > DUPLICATE_IOU) & same & valid[:, None] & valid[None, :]
        pair.fill_diagonal_(False)
        for i in np.flatnonzero(pair.triu().any(0).numpy()):
            hits.append((img, img.objects[int(i)]))
    return hits


def model_figures(config) -> dict[str, int]:
    """The figures the checks need from a model config: queries, feature stride, training size
    (the shorter side it infers at) and classes."""
    stride = config.tiny_stride if config.backbone == "tiny" else 32
    return {"num_queries": config.num_queries, "stride": stride, "train_size": config.image_min_size,
            "num_classes": config.num_classes}
