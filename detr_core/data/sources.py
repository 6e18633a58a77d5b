"""Opening a dataset by name: ``toy``, ``coco:PATH``, ``voc:PATH``, ``yolo:PATH`` or a bare PATH (detected).

COCO ``PATH`` is a folder in one of the layouts :func:`detr_core.data.coco.detect_layout` knows
(COCO 2017's ``ROOT/NAME/`` + ``ROOT/annotations/instances_NAME.json``, splits ``train2017`` /
``val2017`` unless named; a Roboflow export's ``train/``, ``valid/``, ``test/``; images with one
.json beside them, one split) or a pair ``IMAGES_DIR,ANNOTATIONS_FILE``; a split may be such a
pair too. VOC ``PATH`` is a devkit
(``VOCdevkit``, or ``VOC2007`` / ``VOC2012`` inside it); splits ``train`` / ``val`` unless named.
YOLO ``PATH`` is a folder with a ``data.yaml`` (or the .yaml file); splits are its keys, ``train`` /
``val`` unless named.
"""

from __future__ import annotations

from pathlib import Path

from detr_core.config import DatasetConfig, DETRConfig, TrainConfig
from detr_core.data import coco, voc, yolo
from detr_core.data.dataset import DatasetError, DetectionDataset
from detr_core.data.files import FileDataset
from detr_core.data.stream import AugmentedStream
from detr_core.data.transforms import eval_transform, train_transform

FORMATS = ("coco", "voc", "yolo")


def parse_source(source: str) -> tuple[str, Path | None]:
    """``"coco:PATH"`` -> ("coco", PATH); ``"toy"`` -> ("toy", None); a bare path -> detected."""
    if source == "toy":
        return "toy", None
    kind, sep, rest = source.partition(":")
    if sep and kind in FORMATS and rest:
        return kind, Path(rest)
    if sep and len(kind) > 1 and kind not in FORMATS:
        raise DatasetError(f"unknown dataset format {kind!r} in {source!r}; use toy, coco:PATH, voc:PATH or yolo:PATH")
    return detect_format(Path(source)), Path(source)


def detect_format(path: Path) -> str:
    if "," in str(path):
        return "coco"
    if not path.exists():
        raise DatasetError(f"{path}: no such folder")
    if path.is_dir() and coco.is_coco_root(path):
        return "coco"
    if path.is_dir() and voc.find_year_dir(path) is not None:
        return "voc"
    if yolo.is_yolo_root(path):
        return "yolo"
    raise DatasetError(f"{path}: neither a COCO folder ({'; '.join(coco.LAYOUTS)}), "
                       "nor a VOC devkit (VOC20xx/ with Annotations/, JPEGImages/ and ImageSets/Main/), "
                       "nor a YOLO folder (data.yaml with images/ and labels/); "
                       "or name COCO images and their file: coco:IMAGES,ANNOTATIONS.json")


def open_dataset(source: str, split: str = "", role: str = "train", check_images: bool = True) -> FileDataset:
    """One split of a COCO, VOC or YOLO dataset, as stored (no transform). ``split`` "" takes the
    layout's default for ``role`` ("train" or "val"). Raises DatasetError naming the problem."""
    kind, path = parse_source(source)
    if kind == "toy" or path is None:
        raise DatasetError("the toy generator is not a folder: use ToyShapes")
    default = 0 if role == "train" else 1
    if kind == "voc":
        return voc.open_voc(path, split or voc.SPLITS[default], check_images)
    if kind == "yolo":
        return yolo.open_yolo(path, split or yolo.SPLITS[default], check_images)
    pair = split if "," in split else str(path) if "," in str(path) else ""
    if pair:
        images, annotations = (Path(p.strip()) for p in pair.split(",", 1))
        if "," not in str(path):  # a pair given as the split: relative to the root
            images, annotations = path / images, path / annotations
        return coco.open_coco(images, annotations, check_images=check_images)
    name, images, annotations = coco.find_layout(path).split(split, role)
    return coco.open_coco(images, annotations, name=f"COCO {name}", check_images=check_images)


def describe_source(source: str) -> str:
    """The layout a COCO folder source was found in and its splits, e.g. "Roboflow export,
    splits train, valid, test"; "" for other sources (or a folder with no layout found)."""
    try:
        kind, path = parse_source(source)
    except DatasetError:
        return ""
    if kind != "coco" or path is None or "," in str(path):
        return ""
    layout = coco.detect_layout(path)
    return layout.describe() if layout is not None else ""


def training_datasets(train_config: TrainConfig, model_config: DETRConfig) -> tuple[DetectionDataset, DetectionDataset]:
    """The training stream and the held-out set of a run: the toy generator's (unchanged) or a
    dataset's train split (augmented, endless) and val split (resized as the model infers)."""
    from detr_core.data.toy import ToyShapes, heldout_split

    cfg = train_config.dataset
    if cfg.is_toy:
        return (ToyShapes(train_config.data, seed=train_config.seed, split="train"),
                heldout_split(train_config.data, max(train_config.eval_images, 1)))
    train = open_dataset(cfg.source, cfg.train_split, "train")
    val = open_dataset(cfg.source, cfg.val_split, "val")
    if val.class_names != train.class_names:
        raise DatasetError(f"{train.name} and {val.name} have different classes")
    stream = AugmentedStream(train.with_transform(train_transform(cfg)), train_config.seed)
    return stream, val.with_transform(eval_transform(
        model_config.image_min_size, model_config.image_max_size, model_config.fixed_input_size))


def model_sizes(config: DatasetConfig) -> dict[str, int]:
    """The model's inference sizes that match training on ``config``'s augmentation."""
    return {"image_min_size": max(config.scales), "image_max_size": config.max_size}


def fit_to_data(
    model_config: DETRConfig, train_config: TrainConfig, keep_sizes: bool = False,
) -> tuple[DETRConfig, tuple[DetectionDataset, DetectionDataset]]:
    """Open a run's datasets once and fit the model to them: their class count and (for folders,
    unless ``keep_sizes``) the inference sizes of the augmentation. Returns the model config and
    (training stream, held-out set) for ``Trainer(..., datasets=...)``."""
    import dataclasses

    if not train_config.dataset.is_toy and not keep_sizes:
        model_config = dataclasses.replace(model_config, **model_sizes(train_config.dataset))
    datasets = training_datasets(train_config, model_config)  # held-out images resized as the model infers
    return dataclasses.replace(model_config, num_classes=len(datasets[0].class_names)), datasets
