"""Pascal VOC datasets: the devkit layout, read with the standard library's XML parser.

    VOCdevkit/VOC2007/JPEGImages/*.jpg
    VOCdevkit/VOC2007/Annotations/*.xml
    VOCdevkit/VOC2007/ImageSets/Main/{train,val,trainval,test}.txt

The 20 VOC classes, in the usual order, unless the year folder holds a ``class_names.txt`` (one
name a line; ``make-dataset`` writes one for toy shapes). ``difficult`` objects are not training
targets and are ignored in evaluation. VOC pixel indices are 1-based and inclusive: a box
``xmin..xmax`` is ``[xmin - 1, xmax)`` in the 0-based xyxy boxes used here.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from detr_core.data.dataset import DatasetError
from detr_core.data.files import (
    FileDataset,
    ImageRecord,
    Problem,
    clip_box,
    image_size,
    record_arrays,
)

VOC_CLASSES = (
    "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
    "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train", "tvmonitor",
)
SPLITS = ("train", "val")  # default train and val splits
CLASS_FILE = "class_names.txt"


def find_year_dir(root: Path) -> Path | None:
    """The ``VOC20xx`` folder under ``root`` (root itself, ``root/VOC20xx`` or
    ``root/VOCdevkit/VOC20xx``; the latest year when there are several)."""
    def is_year(p: Path) -> bool:
        return (p / "Annotations").is_dir() and (p / "ImageSets" / "Main").is_dir()

    if is_year(root):
        return root
    for base in (root, root / "VOCdevkit"):
        years = sorted((p for p in base.glob("VOC*") if p.is_dir() and is_year(p)), reverse=True)
        if years:
            return years[0]
    return None


def voc_splits(year_dir: Path) -> list[str]:
    return sorted(p.stem for p in (year_dir / "ImageSets" / "Main").glob("*.txt") if "_" not in p.stem)


def read_split(root: Path, split: str) -> tuple[Path, Path, list[str], list[str]]:
    """The devkit's year folder, its split file, the image ids the split lists (in order, repeats
    kept) and the class names (``class_names.txt`` if present, else the 20 VOC classes)."""
    root = Path(root)
    year_dir = find_year_dir(root)
    if year_dir is None:
        raise DatasetError(f"{root}: not a VOC devkit (no VOC20xx folder with Annotations/ and ImageSets/Main/)")
    split_file = year_dir / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        raise DatasetError(f"{split_file}: no such split file; {year_dir.name} has: {', '.join(voc_splits(year_dir))}")
    try:
        ids = [line.split()[0] for line in split_file.read_text().splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{split_file}: cannot read ({e})") from None
    class_file = year_dir / CLASS_FILE
    class_names = ([c.strip() for c in class_file.read_text().splitlines() if c.strip()]
                   if class_file.is_file() else list(VOC_CLASSES))
    return year_dir, split_file, ids, class_names


def open_voc(root: Path, split: str, check_images: bool = True) -> FileDataset:
    root = Path(root)
    year_dir, split_file, ids, class_names = read_split(root, split)
    label_of = {c: i for i, c in enumerate(class_names)}
    problems: list[Problem] = []
    records: list[ImageRecord] = []
    seen: set[str] = set()
    for position, image_name in enumerate(ids):
        if image_name in seen:
            problems.append(Problem("duplicate image id", f"{split_file.name}: {image_name} is listed twice; "
                                                          "the second is left out"))
            continue
        seen.add(image_name)
        record = _read_record(year_dir, image_name, position, label_of, problems, check_images)
        if record is not None:
            records.append(record)
    return FileDataset(f"{year_dir.name} {split}", class_names, list(range(1, len(class_names) + 1)),
                       records, problems, format="voc")


def _read_record(
    year_dir: Path, image_name: str, image_id: int, label_of: dict[str, int], problems: list[Problem],
    check_images: bool,
) -> ImageRecord | None:
    xml_path = year_dir / "Annotations" / f"{image_name}.xml"
    rel = f"{year_dir.name}/Annotations/{xml_path.name}"
    try:
        root = ET.parse(xml_path).getroot()
    except FileNotFoundError:
        problems.append(Problem("missing annotation", f"{rel}: no such file; image {image_name} left out"))
        return None
    except ET.ParseError as e:
        line, column = e.position
        problems.append(Problem("XML that does not parse", f"{rel}: not valid XML (line {line}, column {column}); "
                                                           f"image {image_name} left out"))
        return None
    file_name = (root.findtext("filename") or f"{image_name}.jpg").strip()
    path = year_dir / "JPEGImages" / file_name
    try:
        width, height = int(float(root.findtext("size/width", ""))), int(float(root.findtext("size/height", "")))
    except ValueError:
        width = height = 0
    if check_images or width <= 0 or height <= 0:
        size = image_size(path)
        if isinstance(size, str):
            kind = "missing image" if size == "no such file" else "unreadable image"
            problems.append(Problem(kind, f"{path}: {size} (named by {rel}); left out"))
            return None
        if width > 0 and height > 0 and size != (width, height):
            problems.append(Problem("image size mismatch", f"{path}: {size[0]}x{size[1]} pixels but {rel} says "
                                                           f"{width}x{height}; left out"))
            return None
        width, height = size
    targets: list[tuple[int, list[float]]] = []
    difficult: list[tuple[int, list[float]]] = []
    for k, obj in enumerate(root.iter("object")):
        name = (obj.findtext("name") or "").strip()
        if name not in label_of:
            problems.append(Problem("unknown category", f"{rel}: object {k} has unknown class {name!r}; left out"))
            continue
        try:
            xmin, ymin, xmax, ymax = (float(obj.findtext(f"bndbox/{t}", "")) for t in ("xmin", "ymin", "xmax", "ymax"))
        except ValueError:
            problems.append(Problem("bad box", f"{rel}: object {k} ({name}) has no numeric bndbox; left out"))
            continue
        box, note = clip_box([xmin - 1, ymin - 1, xmax, ymax], width, height)
        if box is None:
            problems.append(Problem(f"box {note}", f"{rel}: object {k} ({name}) box "
                                                   f"({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has {note}; left out"
                                    if note != "outside the image" else
                                    f"{rel}: object {k} ({name}) box is outside the {width}x{height} image; left out"))
            continue
        if note == "clipped":
            problems.append(Problem("box clipped to the image", f"{rel}: object {k} ({name}) extends past the "
                                                                f"{width}x{height} image; clipped"))
        is_difficult = (obj.findtext("difficult") or "0").strip() == "1"
        (difficult if is_difficult else targets).append((label_of[name], box))
    labels, boxes = record_arrays(targets)
    ignored_labels, ignored_boxes = record_arrays(difficult)
    return ImageRecord(path, image_id, width, height, labels, boxes, ignored_labels, ignored_boxes)

