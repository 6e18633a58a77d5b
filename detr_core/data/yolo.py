"""YOLO-format datasets (Ultralytics / darknet txt labels), the layout people export their own data in.

    ROOT/data.yaml                     path: .   train: images/train   val: images/val   names: [a, b]
    ROOT/images/train/*.jpg            (any folder depth; .jpg .jpeg .png .bmp .tif .tiff .webp)
    ROOT/labels/train/<stem>.txt       one object a line: ``class cx cy w h``, normalised to [0, 1]

``data.yaml`` keys: ``train`` and ``val`` (a folder of images, a ``.txt`` list of image paths
relative to the list's folder, or a list of those), relative to ``path`` (optional; itself relative to the folder of data.yaml,
where Ultralytics would use its datasets folder; a split not found there is looked for relative
to the folder of data.yaml too, which also reads Roboflow's ``../train/images``), ``names`` (a
list, or an ``{id: name}`` dict numbered 0..N-1), ``nc`` (optional, must match ``names``; alone,
the classes are named ``class0``, ``class1``, ... as Ultralytics names them).

An image's label file is its path with the last ``images`` folder replaced by ``labels`` and the
suffix by ``.txt`` (Ultralytics' rule); no label file, or an empty one, means no objects. A line
of more than five numbers is a polygon (Ultralytics' segment labels): its bounding box is used.
Class ids are 0-based and are the dataset's own ids (category ids in COCO results). Images have
no stored size, so every image's header is read on opening.

As for COCO and VOC, what is malformed is left out with a message naming the file and the line,
and only what cannot be used at all (no data.yaml, no such split, no usable image) raises
DatasetError. A label file with a line that does not parse leaves its whole image out: with an
object missing, the image would teach the model that the object is background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
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

SPLITS = ("train", "val")  # the default train and val splits (data.yaml keys)
YAML_NAMES = ("data.yaml", "data.yml")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
EDGE_SLACK = 0.5  # pixels a box may pass the image edge (6-decimal rounding) before "clipped" is noted


@dataclass
class YoloLayout:
    """What ``data.yaml`` declares."""

    yaml_file: Path
    base: Path  # the folder split entries are relative to (``path``, or the yaml's folder)
    class_names: list[str]
    splits: dict[str, list[str]]  # split key -> entries as written (folders or .txt lists)


@dataclass
class LabelLine:
    """One object of a label file, as written."""

    line: int  # 1-based line number
    category: int  # the class id
    coords: tuple[float, ...]  # the numbers after the class id (4 for a box, 2k for a polygon)

    def box_cxcywh(self) -> tuple[float, float, float, float]:
        """Normalised (cx, cy, w, h); a polygon's bounding box."""
        if len(self.coords) == 4:
            return self.coords  # type: ignore[return-value]
        xs, ys = self.coords[0::2], self.coords[1::2]
        return ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys))


def find_yaml(path: Path) -> Path | None:
    """``path`` itself when it is a .yaml/.yml file, else ``path/data.yaml`` (or .yml), else None."""
    path = Path(path)
    if path.is_file():
        return path if path.suffix.lower() in (".yaml", ".yml") else None
    return next((path / n for n in YAML_NAMES if (path / n).is_file()), None)


def is_yolo_root(path: Path) -> bool:
    return find_yaml(path) is not None


def read_layout(path: Path) -> YoloLayout:
    """Parse data.yaml under ``path`` (or the .yaml file ``path``). Raises DatasetError."""
    import yaml

    path = Path(path)
    if not path.exists():
        raise DatasetError(f"{path}: no such folder")
    yaml_file = find_yaml(path)
    if yaml_file is None:
        hint = (" (it has images/ and labels/: write a data.yaml with train, val and names)"
                if (path / "images").is_dir() else "")
        raise DatasetError(f"{path}: not a YOLO dataset (no data.yaml){hint}")
    try:
        data = yaml.safe_load(yaml_file.read_text(encoding="utf-8-sig"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise DatasetError(f"{yaml_file}: not valid YAML{where}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DatasetError(f"{yaml_file}: cannot read ({e})") from None
    if not isinstance(data, dict):
        raise DatasetError(f"{yaml_file}: not a YOLO data.yaml (expected keys train, val, names)")
    names = data.get("names")
    if isinstance(names, dict):
        try:
            by_id = {int(k): str(v) for k, v in names.items()}
        except (TypeError, ValueError):
            raise DatasetError(f"{yaml_file}: names: the keys must be class ids 0, 1, ...") from None
        if sorted(by_id) != list(range(len(by_id))):
            raise DatasetError(f"{yaml_file}: names: class ids must be 0..{len(by_id) - 1}, "
                               f"not {sorted(by_id)[:8]}")
        class_names = [by_id[i] for i in range(len(by_id))]
    elif isinstance(names, list) and names:
        class_names = [str(n) for n in names]
    elif names is None and isinstance(data.get("nc"), int) and data["nc"] > 0:  # Ultralytics' default names
        class_names = [f"class{i}" for i in range(data["nc"])]
    else:
        raise DatasetError(f"{yaml_file}: no 'names' (a list of class names, or {{id: name}})")
    nc = data.get("nc")
    if nc is not None and str(nc).strip() != str(len(class_names)):
        raise DatasetError(f"{yaml_file}: nc is {nc} but names lists {len(class_names)} classes")
    root = yaml_file.parent
    base = Path(str(data["path"])) if data.get("path") not in (None, "") else root
    if not base.is_absolute():
        base = root / base
    splits: dict[str, list[str]] = {}
    for key, value in data.items():
        if key in ("path", "names", "nc", "download") or value is None:
            continue
        entries = value if isinstance(value, list) else [value]
        if entries and all(isinstance(e, str) for e in entries):
            splits[str(key)] = entries
    return YoloLayout(yaml_file, base, class_names, splits)


def _resolve(layout: YoloLayout, entry: str) -> Path | None:
    root = layout.yaml_file.parent
    p = Path(entry)
    candidates = [p] if p.is_absolute() else [layout.base / p, root / p]
    if not p.is_absolute() and entry.startswith("../"):  # Roboflow: "../train/images" meant from the root
        candidates.append(root / entry.removeprefix("../"))
    return next((c for c in candidates if c.exists()), None)


def split_images(layout: YoloLayout, split: str) -> list[Path]:
    """The images of ``split`` (sorted, repeats removed). Raises DatasetError when the split is
    not in data.yaml or its folder / list does not exist."""
    if split not in layout.splits:
        known = ", ".join(layout.splits) or "none"
        raise DatasetError(f"{layout.yaml_file}: no split {split!r} (it has: {known})")
    images: list[Path] = []
    for entry in layout.splits[split]:
        where = _resolve(layout, entry)
        if where is None:
            raise DatasetError(f"{layout.base / entry}: no such folder ({split} in {layout.yaml_file.name})")
        if where.is_dir():
            images += sorted(p for p in where.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        else:  # a .txt list of image paths, relative to the list's folder
            try:
                lines = [ln.strip() for ln in where.read_text(encoding="utf-8-sig").splitlines() if ln.strip()]
            except (OSError, UnicodeDecodeError) as e:
                raise DatasetError(f"{where}: cannot read ({e})") from None
            images += [(where.parent / ln) if not Path(ln).is_absolute() else Path(ln) for ln in lines]
    if not images:
        raise DatasetError(f"{layout.yaml_file}: split {split!r} has no images "
                           f"({', '.join(layout.splits[split])}; {', '.join(IMAGE_SUFFIXES)})")
    return list(dict.fromkeys(images))


def label_path(image: Path) -> Path:
    """``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (the last ``images`` folder); an image
    with no ``images`` folder in its path has its labels beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            break
    return Path(*parts).with_suffix(".txt")


def read_labels(path: Path) -> tuple[list[LabelLine], str]:
    """The objects of one label file, and "" or why the file cannot be used (naming the line).
    A missing file is an image without objects."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return [], ""
    except (OSError, UnicodeDecodeError) as e:
        return [], f"{path}: cannot read ({e})"
    objects = []
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        why = ""
        try:
            values = [float(v) for v in fields]
        except ValueError:
            values, why = [], "not numbers"
        if not why and (len(values) < 5 or (len(values) > 5 and len(values) % 2 == 0)):
            why = f"{len(values)} numbers, expected 'class cx cy w h' (or a class and x y pairs)"
        if not why and not all(math.isfinite(v) for v in values):
            why = "a number is not finite"
        if not why and (values[0] != int(values[0]) or values[0] < 0):
            why = f"class id {fields[0]} is not a whole number >= 0"
        if why:
            return [], f"{path} line {n}: {why} ({line.strip()[:60]!r})"
        objects.append(LabelLine(n, int(values[0]), tuple(values[1:])))
    return objects, ""


def to_pixels(cxcywh: tuple[float, float, float, float], width: int, height: int) -> list[float]:
    """Normalised (cx, cy, w, h) -> [x0, y0, x1, y1] pixels of a ``width`` x ``height`` image."""
    cx, cy, w, h = cxcywh
    return [(cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height]


def open_yolo(path: Path, split: str, check_images: bool = True) -> FileDataset:
    """One split of a YOLO dataset. Images are always measured (YOLO stores no sizes);
    ``check_images`` is accepted for the loaders' common signature."""
    layout = read_layout(path)
    names = layout.class_names
    problems: list[Problem] = []
    records: list[ImageRecord] = []
    for position, image in enumerate(split_images(layout, split)):  # the position is the image id
        size = image_size(image)
        if isinstance(size, str):
            kind = "missing image" if size == "no such file" else "unreadable image"
            problems.append(Problem(kind, f"{image}: {size}; left out"))
            continue
        width, height = size
        labels_file = label_path(image)
        objects, why = read_labels(labels_file)
        if why:
            problems.append(Problem("bad label line", f"{why}; image {image.name} left out"))
            continue
        targets: list[tuple[int, list[float]]] = []
        for obj in objects:
            where = f"{labels_file} line {obj.line}"
            if obj.category >= len(names):
                problems.append(Problem("unknown category", f"{where}: class id {obj.category}, but data.yaml "
                                                            f"names {len(names)} classes (0..{len(names) - 1}); "
                                                            "left out"))
                continue
            xyxy = to_pixels(obj.box_cxcywh(), width, height)
            box, note = clip_box(xyxy, width, height)
            if box is None:
                written = " ".join(f"{v:g}" for v in obj.coords[:4])
                if note == "outside the image":
                    hint = " (numbers above 1: pixels, not fractions of the image?)" if max(obj.coords) > 1 else ""
                    message = f"{where}: box {written} is outside the {width}x{height} image{hint}; left out"
                else:
                    message = f"{where}: box {written} has {note}; left out"
                problems.append(Problem(f"box {note}", message))
                continue
            if note == "clipped" and max(box[0] - xyxy[0], box[1] - xyxy[1], xyxy[2] - box[2],
                                         xyxy[3] - box[3]) > EDGE_SLACK:
                problems.append(Problem("box clipped to the image", f"{where}: box extends past the "
                                                                    f"{width}x{height} image; clipped"))
            targets.append((obj.category, box))
        labels, boxes = record_arrays(targets)
        records.append(ImageRecord(image, position, width, height, labels, boxes))
    return FileDataset(f"YOLO {layout.yaml_file.parent.name} {split}", names, list(range(len(names))),
                       records, problems, format="yolo")
